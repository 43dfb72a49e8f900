//! The embedded DNS resolver (127.0.0.11 inside containers on user-defined networks).
