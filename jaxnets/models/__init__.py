"""Model families as pure functions: ``init(key, ...) -> params``, ``apply``, ``loss``."""
