//! Arithmetic on dimensions, as types: `Prod<Const<4>, D>` is the dim `4 * D`.
//!
//! Const generics cannot do arithmetic on stable Rust (`Linear<D, {4 * D}>` needs
//! `generic_const_exprs`), so `#[model]` writes size expressions as these types. Each carries
//! its value as an associated constant computed from its operands, which needs no `where`
//! clauses: a model generic over `D: Size` can hold a `Linear<D, Prod<Const<4>, D>>` without
//! restating any bound. The macro normalises every expression to one canonical form (`4 * D`,
//! `D * 4` and `2 * (2 * D)` all become `Prod<Const<4>, D>`), so equal sizes are equal types.
//!
//! A symbolic operand (the batch `B`) makes the result symbolic too (`SIZE` is `None`).

use std::marker::PhantomData;

use super::{Dim, Size};

macro_rules! dim_op {
    ($(#[$doc:meta])* $name:ident, |$a:ident, $b:ident| $value:expr) => {
        $(#[$doc])*
        pub struct $name<A, B>(PhantomData<(A, B)>);

        impl<A, B> Clone for $name<A, B> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<A, B> Copy for $name<A, B> {}
        impl<A, B> Default for $name<A, B> {
            fn default() -> Self {
                $name(PhantomData)
            }
        }
        impl<A: Dim, B: Dim> std::fmt::Debug for $name<A, B> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}<{:?}, {:?}>", stringify!($name), A::default(), B::default())
            }
        }

        impl<A: Dim, B: Dim> Dim for $name<A, B> {
            const SIZE: Option<usize> = match (A::SIZE, B::SIZE) {
                (Some($a), Some($b)) => Some($value),
                _ => None,
            };
        }

        impl<A: Size, B: Size> Size for $name<A, B> {
            const N: usize = {
                let ($a, $b) = (A::N, B::N);
                $value
            };
        }
    };
}

dim_op!(
    /// `A + B`.
    Sum, |a, b| a + b);
dim_op!(
    /// `A - B` (a compile-time error if it would be negative).
    Diff, |a, b| a - b);
dim_op!(
    /// `A * B`.
    Prod, |a, b| a * b);
dim_op!(
    /// `A / B`, which must divide exactly (a head split `D / H`): a compile-time error
    /// otherwise, when the sizes are known.
    Quot, |a, b| {
        assert!(b != 0 && a % b == 0, "a size division is not exact (e.g. the model width is not divisible by the head count)");
        a / b
    });
dim_op!(
    /// `A / B` rounded down (output sizes of strided windows).
    FloorQuot, |a, b| a / b);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Const;

    #[test]
    fn values() {
        assert_eq!(<Prod<Const<4>, Const<16>> as Size>::N, 64);
        assert_eq!(<Sum<Prod<Const<2>, Const<5>>, Const<1>> as Size>::N, 11);
        assert_eq!(<Quot<Const<64>, Const<4>> as Size>::N, 16);
        assert_eq!(<FloorQuot<Const<7>, Const<2>> as Size>::N, 3);
        assert_eq!(<Diff<Const<7>, Const<2>> as Dim>::SIZE, Some(5));
        assert_eq!(<Prod<Const<4>, crate::shape::Dyn> as Dim>::SIZE, None);
        assert_eq!(<typenum::U64 as Size>::N, 64);
        assert_eq!(<Prod<typenum::U4, Const<3>> as Size>::N, 12);
    }
}
