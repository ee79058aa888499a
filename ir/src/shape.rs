//! Shapes whose dims are known numbers or named symbols.

use std::fmt;

/// One dimension: a number known at compile time, or a symbol (a generic dim such as `B`)
/// whose size is only known at run time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Sym(String),
}

impl Dim {
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
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
