//! ztos-plugin
