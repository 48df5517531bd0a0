"""The lake as SQL: views over silver and gold, the guard, the embedded engine, its HTTP."""
