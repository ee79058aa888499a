//! Dimension types: numbers known to the compiler, and symbolic sizes known at run time.

/// A dimension of a typed tensor.
///
/// `Const<784>` is a size the compiler knows; a generic parameter `B: Dim` is a symbolic size
/// (the batch) that is only known at run time, read from the tensor itself. Two different
/// symbolic parameters are different types, so `[B, T] + [B, S]` does not compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tensor dimension",
    label = "dimensions are numbers (`784`) or generic size parameters (`B: Dim`)",
    note = "write shapes with the `tb!` macro: `tb![B, 784]`"
)]
pub trait Dim: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// The size, when the compiler knows it.
    const SIZE: Option<usize>;
}

/// A dimension of a size fixed at compile time. `tb![B, 784]` writes `Const<784>` for you.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash)]
pub struct Const<const N: usize>;

impl<const N: usize> Dim for Const<N> {
    const SIZE: Option<usize> = Some(N);
}

/// A dimension whose size is only known at run time (`tb![_, 784]`), for code outside a
/// generic function that has no name for it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash)]
pub struct Dyn;

impl Dim for Dyn {
    const SIZE: Option<usize> = None;
}

/// The dims of a typed tensor: a tuple of [`Dim`]s, rank 0 to 6.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tensor shape",
    label = "shapes are tuples of dimensions",
    note = "write shapes with the `tb!` macro: `tb![B, 3, 32, 32]`"
)]
pub trait Shape: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    const RANK: usize;
    /// Each dim's compile-time size, `None` for symbolic dims.
    fn static_dims() -> Vec<Option<usize>>;
}

macro_rules! tuple_shape {
    ($($d:ident),*) => {
        impl<$($d: Dim),*> Shape for ($($d,)*) {
            const RANK: usize = <[&str]>::len(&[$(stringify!($d)),*]);
            fn static_dims() -> Vec<Option<usize>> {
                vec![$($d::SIZE),*]
            }
        }
    };
}

tuple_shape!();
tuple_shape!(D0);
tuple_shape!(D0, D1);
tuple_shape!(D0, D1, D2);
tuple_shape!(D0, D1, D2, D3);
tuple_shape!(D0, D1, D2, D3, D4);
tuple_shape!(D0, D1, D2, D3, D4, D5);
