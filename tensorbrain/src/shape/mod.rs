//! Static shapes: typed tensors whose dims the compiler checks.
//!
//! Static dims are `Const<N>` (const generics print as plain numbers in compiler messages);
//! symbolic dims are generic parameters. The `#[model]` macro checks whole forward passes
//! itself, with spans and messages in plain numbers, and emits these types for what it
//! cannot see (calls into nested models).

pub mod arith;
mod dims;
mod typed;

pub use arith::{Diff, FloorQuot, Prod, Quot, Sum};
pub use dims::{Const, Dim, Dyn, Shape, Size};
pub use typed::Tensor;
