//! ztos-tests
