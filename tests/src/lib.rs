//! Helpers shared by the QEMU integration tests.
