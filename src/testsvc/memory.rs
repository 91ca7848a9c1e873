//! `--alloc`: allocate and touch memory (all at once, or in steps every interval) and keep it,
//! printing `allocated <total> MiB` after each step.

use std::time::Instant;

use super::opts::Alloc;
use super::output::say;

const MIB: usize = 1 << 20;
/// Touch stride: the smallest page size Linux uses; larger pages are touched several times.
const PAGE: usize = 4096;

/// Grows the resident memory as `alloc` asks, then returns (the memory is leaked, i.e. kept).
pub(crate) fn run(alloc: &Alloc) -> Result<(), String> {
    let start = Instant::now();
    let mut total: u64 = 0;
    let mut step: u32 = 0;
    while total < alloc.total_mib || step == 0 {
        let due = start + alloc.interval.saturating_mul(step);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let grow = alloc.step_mib.min(alloc.total_mib - total);
        touch_new(grow)?;
        total += grow;
        step += 1;
        say(&format!("allocated {total} MiB"));
    }
    Ok(())
}

/// Allocates `mib` MiB, writes a byte in every page (so every page becomes resident, quickly even
/// in debug builds) and keeps the allocation forever.
fn touch_new(mib: u64) -> Result<(), String> {
    let bytes = usize::try_from(mib)
        .ok()
        .and_then(|m| m.checked_mul(MIB))
        .ok_or_else(|| format!("{mib} MiB does not fit in memory"))?;
    let mut block: Vec<u8> = Vec::new();
    block.try_reserve_exact(bytes).map_err(|e| format!("cannot allocate {mib} MiB: {e}"))?;
    for byte in block.spare_capacity_mut().iter_mut().step_by(PAGE) {
        byte.write(1);
    }
    // Keep the writes: the block must look used to the optimizer.
    std::hint::black_box(&mut block);
    std::mem::forget(block);
    Ok(())
}
