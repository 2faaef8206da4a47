"""Service functions: the thin layer between routes and core/profilers. Each takes an explicit session."""
