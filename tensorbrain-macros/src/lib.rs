//! Procedural macros for TensorBrain. `#[model]` and `tb![]` arrive with the static-shape issue.
