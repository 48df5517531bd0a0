import pytest

from binlake.errors import ConfigurationError
from binlake.local_stack.executables import find_executable


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
