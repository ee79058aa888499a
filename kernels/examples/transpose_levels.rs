//! The f32 transpose (`x·Wᵀ`'s B operand before the GEMM) at each SIMD level this CPU has,
//! the levels interleaved so that machine load moves every column alike: median (min) µs of
//! 200 runs.
//!
//! ```sh
//! cargo run --release -p tensorbrain-kernels --example transpose_levels
//! ```

use std::time::Instant;

use tensorbrain_kernels::cpu::CpuLevel;
use tensorbrain_kernels::transpose::{padded_ld, transpose_f32_with_level};

const RUNS: usize = 200;

fn main() {
    let levels = CpuLevel::supported();
    print!("| rows×cols |");
    for level in &levels {
        print!(" {level} |");
    }
    println!("\n|---|{}", "---:|".repeat(levels.len()));
    for (rows, cols) in [(128, 784), (256, 784), (144, 1024), (1024, 1024), (512, 2048)] {
        let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let ld_dst = padded_ld(rows);
        let mut dst = vec![0.0f32; cols * ld_dst];
        let mut times = vec![Vec::with_capacity(RUNS); levels.len()];
        for _ in 0..RUNS {
            for (level, level_times) in levels.iter().zip(&mut times) {
                let start = Instant::now();
                transpose_f32_with_level(*level, rows, cols, &src, 0, cols, &mut dst, ld_dst);
                level_times.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        print!("| {rows}×{cols} |");
        for level_times in &mut times {
            level_times.sort_by(f64::total_cmp);
            print!(" {:.1} ({:.1}) |", level_times[RUNS / 2], level_times[0]);
        }
        println!();
    }
}
