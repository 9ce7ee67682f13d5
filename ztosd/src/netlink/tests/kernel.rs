//! Placeholder while the real-kernel test is written.
