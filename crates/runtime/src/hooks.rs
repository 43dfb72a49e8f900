//! hooks (being written).
