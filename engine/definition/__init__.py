"""Graph definitions: the file format, loading, compiling and checking, state types, expressions."""
