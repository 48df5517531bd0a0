from binlake.cli import app

app(prog_name="binlake")
