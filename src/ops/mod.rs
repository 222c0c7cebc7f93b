//! One module per operation. Each takes a repository and options and returns a summary.
