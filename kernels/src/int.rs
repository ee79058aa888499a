//! Integer element arithmetic with PyTorch's semantics: `+ - *` wrap on overflow, `//` and `%`
//! round toward negative infinity (Python's rules), `fmod` toward zero. Division by zero is the
//! caller's to reject (PyTorch raises `ZeroDivisionError`); these methods assume a non-zero
//! divisor.

/// An integer element type: i64, i32, i16, i8 and u8.
pub trait Int: Copy + Send + Sync + Default + PartialOrd + Ord + std::fmt::Debug + 'static {
    const ZERO: Self;
    const ONE: Self;
    fn wadd(self, o: Self) -> Self;
    fn wsub(self, o: Self) -> Self;
    fn wmul(self, o: Self) -> Self;
    fn wneg(self) -> Self;
    fn wabs(self) -> Self;
    /// `floor(self / o)` (Python's `//`).
    fn floor_div(self, o: Self) -> Self;
    /// `self / o` rounded toward zero (C's `/`).
    fn trunc_div(self, o: Self) -> Self;
    /// `self - floor(self / o) * o`: the result takes the divisor's sign (Python's `%`).
    fn floor_rem(self, o: Self) -> Self;
    /// `self - trunc(self / o) * o`: the result takes the dividend's sign (C's `%`, `fmod`).
    fn trunc_rem(self, o: Self) -> Self;
    /// `self ** e`, wrapping; a negative `e` gives `1 / self ** |e|` truncated (0 unless
    /// `self` is 1 or -1), as PyTorch's integer `pow` does for tensor exponents.
    fn wpow(self, e: Self) -> Self;
    fn is_negative(self) -> bool;
    fn signum_int(self) -> Self;
}

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline(always)]
            fn wadd(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)]
            fn wsub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)]
            fn wmul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            fn wneg(self) -> Self { self.wrapping_neg() }
            #[inline(always)]
            fn wabs(self) -> Self { self.wrapping_abs() }
            #[inline(always)]
            fn floor_div(self, o: Self) -> Self {
                let q = self.wrapping_div(o);
                if (self.wrapping_rem(o) != 0) && ((self < 0) != (o < 0)) { q - 1 } else { q }
            }
            #[inline(always)]
            fn trunc_div(self, o: Self) -> Self { self.wrapping_div(o) }
            #[inline(always)]
            fn floor_rem(self, o: Self) -> Self {
                let r = self.wrapping_rem(o);
                if r != 0 && ((r < 0) != (o < 0)) { r + o } else { r }
            }
            #[inline(always)]
            fn trunc_rem(self, o: Self) -> Self { self.wrapping_rem(o) }
            #[inline(always)]
            fn wpow(self, e: Self) -> Self {
                if e < 0 {
                    return match self {
                        1 => 1,
                        -1 => if e % 2 == 0 { 1 } else { -1 },
                        _ => 0,
                    };
                }
                let (mut base, mut e, mut acc) = (self, e as u64, 1 as $t);
                while e > 0 {
                    if e & 1 == 1 { acc = acc.wrapping_mul(base); }
                    base = base.wrapping_mul(base);
                    e >>= 1;
                }
                acc
            }
            #[inline(always)]
            fn is_negative(self) -> bool { self < 0 }
            #[inline(always)]
            fn signum_int(self) -> Self { self.signum() }
        }
    )*};
}

signed!(i64, i32, i16, i8);

impl Int for u8 {
    const ZERO: Self = 0;
    const ONE: Self = 1;
    #[inline(always)]
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn wmul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    #[inline(always)]
    fn wneg(self) -> Self {
        self.wrapping_neg()
    }
    #[inline(always)]
    fn wabs(self) -> Self {
        self
    }
    #[inline(always)]
    fn floor_div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    fn trunc_div(self, o: Self) -> Self {
        self / o
    }
    #[inline(always)]
    fn floor_rem(self, o: Self) -> Self {
        self % o
    }
    #[inline(always)]
    fn trunc_rem(self, o: Self) -> Self {
        self % o
    }
    #[inline(always)]
    fn wpow(self, e: Self) -> Self {
        self.wrapping_pow(e as u32)
    }
    #[inline(always)]
    fn is_negative(self) -> bool {
        false
    }
    #[inline(always)]
    fn signum_int(self) -> Self {
        (self > 0) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::Int;

    #[test]
    fn floor_and_trunc_division_follow_python_and_c() {
        assert_eq!((-7i64).floor_div(2), -4);
        assert_eq!((-7i64).trunc_div(2), -3);
        assert_eq!((-7i64).floor_rem(2), 1);
        assert_eq!((-7i64).trunc_rem(2), -1);
        assert_eq!(7i32.floor_rem(-2), -1);
        assert_eq!(7i32.trunc_rem(-2), 1);
        assert_eq!(6i8.floor_div(-3), -2);
        assert_eq!(i64::MIN.floor_div(-1), i64::MIN, "wraps like PyTorch");
    }

    #[test]
    fn arithmetic_wraps() {
        assert_eq!(127i8.wadd(1), -128);
        assert_eq!(200u8.wmul(2), 144);
        assert_eq!(3i64.wpow(4), 81);
        assert_eq!(2i8.wpow(8), 0);
        assert_eq!(0i16.wpow(0), 1);
        assert_eq!((-1i64).wpow(-3), -1);
        assert_eq!(2i32.wpow(-1), 0);
    }
}
