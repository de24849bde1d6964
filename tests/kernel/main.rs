//! Kernel tests: run the real `ig` binary against the running kernel.
