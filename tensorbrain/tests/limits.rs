//! Impossible sizes are errors that say what was asked for, never an abort, a wrapped-around
//! element count or a panic deep inside a later op: shape products that overflow `usize`, and
//! allocations no machine can make.

use tensorbrain::{DType, Tensor};

/// 2^28 x 2^28 f32 elements = 2^58 bytes (256 PiB): more than the address space of any x86-64
/// or AArch64 machine, so the allocation fails whatever the kernel's overcommit policy (a few
/// TiB would be refused here too, but could succeed lazily on a machine that overcommits).
const HUGE: [usize; 2] = [1 << 28, 1 << 28];
const HUGE_F32_BYTES: &str = "288230376151711744 bytes";

fn assert_names_shape_and_bytes(e: &str, op: &str) {
    assert!(e.starts_with(op), "the error names the op {op}: {e}");
    assert!(e.contains("[268435456, 268435456]"), "the error names the shape: {e}");
    assert!(e.contains(HUGE_F32_BYTES) && e.contains("256.0 PiB"), "the error names the bytes: {e}");
}

#[test]
fn creation_of_an_impossible_size_is_an_error_naming_shape_and_bytes() {
    assert_names_shape_and_bytes(&Tensor::try_zeros(&HUGE, DType::F32).unwrap_err().to_string(), "zeros");
    assert_names_shape_and_bytes(&Tensor::try_ones(&HUGE, DType::F32).unwrap_err().to_string(), "ones");
    assert_names_shape_and_bytes(&Tensor::try_full(&HUGE, 2.0, DType::F32).unwrap_err().to_string(), "full");
    assert_names_shape_and_bytes(&Tensor::try_randn(&HUGE, DType::F32).unwrap_err().to_string(), "randn");
    assert_names_shape_and_bytes(&Tensor::try_rand(&HUGE, DType::F32).unwrap_err().to_string(), "rand");
    let e = Tensor::try_randint(0, 10, &HUGE).unwrap_err().to_string();
    assert!(e.starts_with("randint") && e.contains("576460752303423488 bytes") && e.contains("i64"), "{e}");
}

#[test]
fn matmul_with_an_impossible_output_is_an_error() {
    // Expanded operands cost nothing; their [2^28, 2^28] product would need 256 PiB.
    let a = Tensor::zeros(&[1, 1], DType::F32).expand(&[1 << 28, 1]);
    let b = Tensor::zeros(&[1, 1], DType::F32).expand(&[1, 1 << 28]);
    assert_names_shape_and_bytes(&a.try_matmul(&b).unwrap_err().to_string(), "matmul");
}

#[test]
fn broadcasting_and_copies_of_an_impossible_size_are_errors() {
    let col = Tensor::zeros(&[1, 1], DType::F32).expand(&[1 << 28, 1]);
    let row = Tensor::zeros(&[1, 1], DType::F32).expand(&[1, 1 << 28]);
    assert_names_shape_and_bytes(&col.try_add(&row).unwrap_err().to_string(), "add");
    let wide = Tensor::zeros(&[1, 1], DType::F32).expand(&HUGE.map(|d| d as isize));
    assert_names_shape_and_bytes(&wide.try_contiguous().unwrap_err().to_string(), "contiguous");
}

#[test]
#[should_panic(expected = "288230376151711744 bytes")]
fn the_panicking_form_says_the_same() {
    Tensor::zeros(&HUGE, DType::F32);
}

#[test]
fn shape_products_that_overflow_are_errors() {
    let big = [1usize << 32, 1 << 32];
    for e in [
        Tensor::try_zeros(&big, DType::F32).unwrap_err(),
        Tensor::try_randn(&big, DType::F32).unwrap_err(),
        Tensor::try_from_vec(Vec::<f32>::new(), &big).unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(e.contains("[4294967296, 4294967296]") && e.contains("overflows"), "{e}");
    }
    // Not an f32 overflow but a byte-count one: 2^62 f32 elements are 2^64 bytes.
    let e = Tensor::try_zeros(&[1 << 31, 1 << 31], DType::F32).unwrap_err().to_string();
    assert!(e.contains("[2147483648, 2147483648]") && e.contains("more than"), "{e}");
}

#[test]
fn reshape_and_expand_to_overflowing_shapes_are_errors() {
    let x = Tensor::zeros(&[2, 3], DType::F32);
    let e = x.try_reshape(&[1 << 62, 4]).unwrap_err().to_string();
    assert!(e.contains("overflows") && !e.contains("has 0 elements"), "{e}");
    let e = x.try_reshape(&[6, isize::MAX, isize::MAX]).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
    let e = x.try_reshape(&[-1, 1 << 62, 4]).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
    let e = x.try_view(&[1 << 62, 4]).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
    let e = Tensor::zeros(&[1, 1], DType::F32).try_expand(&[1 << 32, 1 << 32]).unwrap_err().to_string();
    assert!(e.starts_with("expand") && e.contains("overflows"), "{e}");
    // The sizes that do fit still work.
    assert_eq!(x.reshape(&[3, -1]).shape(), [3, 2]);
    assert_eq!(Tensor::zeros(&[1], DType::F32).expand(&[1 << 40]).shape(), [1 << 40]);
}

#[test]
fn pad_cat_and_stack_to_overflowing_shapes_are_errors() {
    let x = Tensor::zeros(&[2], DType::F32);
    let e = x.try_pad(&[usize::MAX, 1], 0.0).unwrap_err().to_string();
    assert!(e.starts_with("pad") && e.contains("overflows"), "{e}");
    let big = Tensor::zeros(&[1], DType::F32).expand(&[isize::MAX]);
    let e = Tensor::try_cat(&[&big, &big, &big], 0).unwrap_err().to_string();
    assert!(e.starts_with("cat") && e.contains("overflows"), "{e}");
}
