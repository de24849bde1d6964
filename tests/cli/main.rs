//! CLI tests: run the real `ig` binary.
