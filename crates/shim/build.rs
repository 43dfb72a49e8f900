//! Link berth-shim as a position-dependent executable. In a PIE, every pointer in
//! the read-only data (vtables, string tables) is relocated at load time, which
//! dirties those pages in each shim: a quarter of a megabyte per container, over
//! a budget of a few hundred kilobytes. At a fixed address the linker resolves
//! them once, and the pages stay clean, shared and reclaimable.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
