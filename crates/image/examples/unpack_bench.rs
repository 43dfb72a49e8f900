//! Unpack throughput of a ~200 MB compressible gzip layer, and where the time goes.
//! Usage: `cargo run --release -p berth-image --example unpack_bench [DIR]`; prints the
//! gzipped blob path so `tar -xzf` can be timed on the same file as the anchor.

use std::io::Write;
use std::path::PathBuf;

use berth_image::layer::{remove_partial, unpack_layer, UnpackOptions};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-unpack-bench"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let blob = dir.join("layer.tar.gz");
    if !blob.exists() {
        // Text-like content (compresses ~4-5x like binaries and sources in real layers),
        // spread over files of mixed sizes as in a distro layer.
        let gz = std::fs::File::create(&blob).expect("blob");
        let enc = flate2::write::GzEncoder::new(gz, flate2::Compression::default());
        let mut b = tar::Builder::new(enc);
        let mut seed = 0x9e3779b97f4a7c15u64;
        let words: Vec<String> = (0..4096)
            .map(|i| {
                format!(
                    "w{:x}{} ",
                    i * 2654435761u64 % 99991,
                    "xyz".repeat((i % 4) as usize)
                )
            })
            .collect();
        let mut total = 0usize;
        let mut n = 0;
        while total < 200 << 20 {
            let size = [512usize, 4096, 30_000, 200_000, 2 << 20][n % 5];
            let mut data = Vec::with_capacity(size);
            while data.len() < size {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.extend_from_slice(words[(seed % 4096) as usize].as_bytes());
            }
            data.truncate(size);
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            b.append_data(
                &mut h,
                format!("usr/share/d{}/f{n}", n % 97),
                data.as_slice(),
            )
            .expect("append");
            total += size;
            n += 1;
        }
        b.into_inner()
            .expect("tar")
            .finish()
            .expect("gzip")
            .flush()
            .expect("flush");
    }
    let target = dir.join("out");
    for run in 0..3 {
        remove_partial(&target).expect("clean");
        std::fs::create_dir(&target).expect("target");
        let f = std::fs::File::open(&blob).expect("open blob");
        let stats =
            unpack_layer(f, &target, &UnpackOptions::new("bench", "layer")).expect("unpack");
        let secs = stats.total_time.as_secs_f64();
        println!(
            "run {run}: {} files, {:.1} MB tar ({:.1} MB gz) in {:.2}s = {:.0} MB/s uncompressed; \
             decompress {:.2}s, sha256 {:.2}s, tar+write {:.2}s",
            stats.files,
            stats.uncompressed_bytes as f64 / 1e6,
            stats.compressed_bytes as f64 / 1e6,
            secs,
            stats.uncompressed_bytes as f64 / 1e6 / secs,
            stats.decompress_time.as_secs_f64(),
            stats.hash_time.as_secs_f64(),
            stats.write_time.as_secs_f64(),
        );
    }
    remove_partial(&target).expect("clean");
    println!("blob: {}", blob.display());
}
