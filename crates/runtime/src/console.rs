//! console (being written).
