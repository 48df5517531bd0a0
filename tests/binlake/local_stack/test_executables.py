import sys

import pytest

from binlake.errors import ConfigurationError
from binlake.local_stack.executables import find_executable, run_setup_command


def test_sbin_programs_are_found_without_sbin_on_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    # Debian puts mariadbd in /usr/sbin (installed by .ci/install-system-deps)
    assert find_executable("mariadbd") == "/usr/sbin/mariadbd"


def test_a_missing_program_names_itself_and_how_to_get_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="mariadbd-nope not found"):
        find_executable("mariadbd-nope")
    with pytest.raises(ConfigurationError, match="apt-get install openjdk"):
        find_executable(str(tmp_path / "java"))


def test_a_failed_setup_command_names_what_failed_and_ends_with_its_output() -> None:
    run_setup_command([sys.executable, "-c", "print('fine')"], "a fine command")
    script = "import sys; print('x' * 3000); print('the reason', file=sys.stderr); sys.exit(3)"
    with pytest.raises(ConfigurationError, match=r"^formatting failed \(3\): x+\nthe reason\n$"):
        run_setup_command([sys.executable, "-c", script], "formatting")
