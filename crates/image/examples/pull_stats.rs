//! Pulls an image into a fresh temporary data-root and prints where the time went,
//! layer by layer: `pull_stats REFERENCE [DOWNLOADS]` (bench/image-pull.sh runs it).
//! Registries on loopback are insecure by default, as in dockerd.

use std::time::Instant;

use berth_image::pull::PullOptions;
use berth_image::registry::{RegistryClient, RegistryConfig};
use berth_image::Images;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let reference = args
        .next()
        .ok_or("usage: pull_stats REFERENCE [DOWNLOADS]")?;
    let downloads = match args.next() {
        Some(n) => n.parse()?,
        None => berth_image::pull::DEFAULT_CONCURRENT_DOWNLOADS,
    };
    let dir = tempfile::tempdir()?;
    let images = Images::open(dir.path())?;
    let client = RegistryClient::new(RegistryConfig::new());
    let options = PullOptions {
        platform: None,
        max_concurrent_downloads: downloads,
    };
    let started = Instant::now();
    let result = images.pull(&client, &reference, &options, &|_| {})?;
    let total = started.elapsed();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!("layer         MB gz  MB tar   wall ms  decompress+wait ms  hash ms  write ms");
    let (mut decompress, mut hash, mut write) = (0.0, 0.0, 0.0);
    for layer in &result.layers {
        let u = &layer.unpack;
        println!(
            "{}  {:5.1}  {:6.1}  {:8.0}  {:18.0}  {:7.0}  {:8.0}",
            layer.digest.short(),
            layer.size as f64 / 1e6,
            u.uncompressed_bytes as f64 / 1e6,
            ms(layer.elapsed),
            ms(u.decompress_time),
            ms(u.hash_time),
            ms(u.write_time),
        );
        decompress += ms(u.decompress_time);
        hash += ms(u.hash_time);
        write += ms(u.write_time);
    }
    println!(
        "pull {:.0} ms (layers {:.0} ms wall, {} at once); summed over layers: \
         decompress+wait {decompress:.0} ms, hash {hash:.0} ms, write {write:.0} ms",
        ms(total),
        ms(result.layers_elapsed),
        downloads
    );
    Ok(())
}
