//! namespaces (being written).
