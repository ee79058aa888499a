//! The hand-written CUDA sources, embedded in the binary. Each is compiled as
//! `common.cuh` followed by the file (NVRTC is given no include paths, so the shared helpers
//! are prepended rather than `#include`d).

/// Helpers every source uses: shapes/strides, math overloads, warp and block reductions.
pub const COMMON: &str = include_str!("kernels/common.cuh");

/// (file name, source) of every `.cu` file in kernels/src/cuda/kernels/.
pub const SOURCES: &[(&str, &str)] = &[
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("reduce.cu", include_str!("kernels/reduce.cu")),
    ("softmax.cu", include_str!("kernels/softmax.cu")),
    ("layer_norm.cu", include_str!("kernels/layer_norm.cu")),
    ("embedding.cu", include_str!("kernels/embedding.cu")),
    ("cross_entropy.cu", include_str!("kernels/cross_entropy.cu")),
    ("adam.cu", include_str!("kernels/adam.cu")),
    ("conv.cu", include_str!("kernels/conv.cu")),
    ("pool.cu", include_str!("kernels/pool.cu")),
    ("index.cu", include_str!("kernels/index.cu")),
];

/// The full text NVRTC compiles for `name`, or `None` if there is no such source.
pub fn full_source(name: &str) -> Option<String> {
    SOURCES.iter().find(|(n, _)| *n == name).map(|(_, s)| format!("{COMMON}\n#line 1 \"{name}\"\n{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cu_file_on_disk_is_listed() {
        // A new .cu file that is not in SOURCES would never be compiled by the NVRTC test.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cuda/kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cu"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = SOURCES.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn full_source_starts_with_the_common_header() {
        let s = full_source("softmax.cu").unwrap();
        assert!(s.starts_with(COMMON));
        assert!(s.contains("softmax_fwd_f32"));
        assert!(full_source("nope.cu").is_none());
    }
}
