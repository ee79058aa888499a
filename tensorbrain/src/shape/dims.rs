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

/// A dimension whose value the compiler knows for every instantiation: a number
/// (`Const<64>`, or typenum's `U64`), or arithmetic on a model's size parameters
/// (`Prod<Const<4>, D>` is `4 * D`). A `#[model]` generic over `D: Dim` gets `D: Size` added, so
/// its layers can be sized by `D`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a size known at compile time",
    label = "model size parameters are numbers (`Const<64>`, typenum's `U64`) or arithmetic on them",
    note = "symbolic dims like the batch `B` are known only at run time and cannot size a layer"
)]
pub trait Size: Dim {
    /// The size.
    const N: usize;
}

impl<const N: usize> Size for Const<N> {
    const N: usize = N;
}

/// typenum's numbers are sizes too: `Ffn::<U64>::init(0)`.
impl<U: typenum::Unsigned + Copy + Default + Send + Sync + std::fmt::Debug + 'static> Dim for U {
    const SIZE: Option<usize> = Some(U::USIZE);
}

impl<U: typenum::Unsigned + Copy + Default + Send + Sync + std::fmt::Debug + 'static> Size for U {
    const N: usize = U::USIZE;
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
