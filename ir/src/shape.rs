//! Shapes whose dims are known numbers or named symbols.

use std::fmt;

pub use crate::dim::{Atom, Poly};

/// One dimension: a number known at compile time, a named size (a generic dim such as `B`,
/// known at run time; a model's size parameter `D`; a named constant `D_MODEL`), or an
/// expression over them (`4*D`, `B*T`, `D/H`) in [`Poly`]'s canonical form. The constructors
/// and the arithmetic below keep the representation canonical: a constant is always `Known`, a
/// lone name always `Sym`, so derived equality is equality of values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Sym(String),
    Expr(Poly),
}

impl Dim {
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    /// The canonical dim of a polynomial.
    pub fn from_poly(p: Poly) -> Dim {
        if let Some(c) = p.as_constant() {
            if let Ok(n) = usize::try_from(c) {
                return Dim::Known(n);
            }
        }
        if let Some(s) = p.as_sym() {
            return Dim::Sym(s.to_string());
        }
        Dim::Expr(p)
    }

    pub fn poly(&self) -> Poly {
        match self {
            Dim::Known(n) => Poly::constant(*n as i64),
            Dim::Sym(s) => Poly::sym(s.clone()),
            Dim::Expr(p) => p.clone(),
        }
    }

    pub fn add(&self, o: &Dim) -> Dim {
        Dim::from_poly(self.poly().add(&o.poly()))
    }

    pub fn sub(&self, o: &Dim) -> Dim {
        Dim::from_poly(self.poly().sub(&o.poly()))
    }

    pub fn mul(&self, o: &Dim) -> Dim {
        Dim::from_poly(self.poly().mul(&o.poly()))
    }

    /// Division the caller promises is exact (`D / H` for a head split).
    pub fn div_exact(&self, o: &Dim) -> Result<Dim, String> {
        self.poly().div_exact(&o.poly()).map(Dim::from_poly)
    }

    pub fn div_floor(&self, o: &Dim) -> Result<Dim, String> {
        self.poly().div_floor(&o.poly()).map(Dim::from_poly)
    }

    /// A constant that is negative or zero: a size that cannot exist.
    pub fn is_nonpositive_constant(&self) -> bool {
        match self {
            Dim::Known(n) => *n == 0,
            Dim::Expr(p) => p.as_constant().is_some_and(|c| c <= 0),
            Dim::Sym(_) => false,
        }
    }

    /// The value, given every symbol's.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => usize::try_from(self.poly().eval(env)?).ok(),
        }
    }

    /// Replaces symbols (a nested generic model's parameters by the outer model's dims).
    pub fn substitute(&self, f: &dyn Fn(&str) -> Option<Dim>) -> Result<Dim, String> {
        match self {
            Dim::Known(_) => Ok(self.clone()),
            _ => self.poly().substitute(&|s| f(s).map(|d| d.poly())).map(Dim::from_poly),
        }
    }

    pub fn symbols(&self) -> Vec<String> {
        match self {
            Dim::Known(_) => vec![],
            Dim::Sym(s) => vec![s.clone()],
            Dim::Expr(p) => p.symbols(),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Expr(p) => write!(f, "{p}"),
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl From<&str> for Dim {
    fn from(s: &str) -> Dim {
        Dim::Sym(s.to_string())
    }
}

/// A tensor shape, printed as users write it: `[B, 784]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn new(dims: impl IntoIterator<Item = Dim>) -> Shape {
        Shape(dims.into_iter().collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// A shape the macro cannot know (the output of a nested model): ops on it are not
    /// checked at compile time, only at run time.
    pub fn unknown(tag: &str) -> Shape {
        Shape(vec![Dim::Sym(format!("?{tag}"))])
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self.0.as_slice(), [Dim::Sym(s)] if s.starts_with('?'))
    }

    /// The element count, if every dim is known.
    pub fn numel(&self) -> Option<usize> {
        self.0.iter().map(Dim::known).product()
    }

    /// The element count as a dim (`B*T*64`).
    pub fn numel_dim(&self) -> Dim {
        self.0.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
    }

    /// Every dim evaluated, given every symbol's value.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<Vec<usize>> {
        self.0.iter().map(|d| d.eval(env)).collect()
    }

    /// Whether every dim is a number.
    pub fn is_static(&self) -> bool {
        self.0.iter().all(|d| d.known().is_some())
    }

    /// Normalises a possibly negative dim index.
    pub fn axis(&self, dim: isize) -> Option<usize> {
        let r = self.rank() as isize;
        let d = if dim < 0 { dim + r } else { dim };
        (0..r).contains(&d).then_some(d as usize)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unknown() {
            return f.write_str("[?]");
        }
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// Builds a shape from numbers and symbol names: `shape!["B", 784]`.
#[macro_export]
macro_rules! shape {
    ($($d:expr),* $(,)?) => { $crate::Shape(vec![$($crate::Dim::from($d)),*]) };
}

/// A shape rule that failed: what the op is, and why, in user terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError {
    pub message: String,
}

impl ShapeError {
    pub fn new(message: impl Into<String>) -> ShapeError {
        ShapeError { message: message.into() }
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ShapeError {}
