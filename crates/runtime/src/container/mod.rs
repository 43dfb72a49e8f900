//! Container lifecycle verbs, one file each (being written).
