//! Sizes as users write them (`784`, `B`, `D_MODEL`, `4 * D`, `{D / H}`), read into the IR's
//! symbolic [`Dim`]s, and written back out as Rust types and run-time values.
//!
//! A name means one of four things, decided by where it is declared, else by Rust's naming
//! conventions:
//! - a generic *type* parameter of the model (`struct Ffn<D: Dim>`): a size fixed per
//!   instantiation, carried as a type (`Const<64>`, typenum's `U64`, or `Prod<Const<4>, C>`);
//! - a generic *const* parameter of the model (`struct Mlp<const H: usize>`): likewise, a number;
//! - a named constant (`const D_MODEL: usize = 64;`), SCREAMING_CASE: a number the macro cannot
//!   see, so checks that need its value become `const` assertions that rustc evaluates;
//! - anything else (`B`, `T`, `Seq`): a symbolic size of `forward`, known only at run time.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::{BinOp, Expr, Lit, Type};
use tensorbrain_ir::{Atom, Dim, Poly};

/// What a size name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymKind {
    /// A symbolic size of `forward` (`B`): a generic `Dim` parameter, read from the inputs.
    Forward,
    /// A generic type parameter of the model (`D`): `<D as Size>::N`.
    TypeParam,
    /// A generic const parameter of the model (`H`).
    ConstParam,
    /// A `const` item (`D_MODEL`).
    NamedConst,
}

/// The names in scope for a model (or helper function).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub type_params: Vec<String>,
    pub const_params: Vec<String>,
}

impl Scope {
    pub fn kind(&self, name: &str) -> SymKind {
        if self.type_params.iter().any(|p| p == name) {
            SymKind::TypeParam
        } else if self.const_params.iter().any(|p| p == name) {
            SymKind::ConstParam
        } else if is_const_name(name) {
            SymKind::NamedConst
        } else {
            SymKind::Forward
        }
    }

    /// Whether `d` is fixed per instantiation (mentions no symbolic size of `forward`).
    pub fn is_static(&self, d: &Dim) -> bool {
        d.symbols().iter().all(|s| self.kind(s) != SymKind::Forward)
    }
}

/// SCREAMING_CASE names of two or more characters (`D_MODEL`, `HIDDEN`) are constants; single
/// letters (`B`, optionally with digits: `T2`) and CamelCase names are symbolic sizes.
pub fn is_const_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return false };
    let rest: String = chars.collect();
    first.is_ascii_uppercase()
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && (rest.contains('_') || rest.chars().any(|c| c.is_ascii_uppercase()))
}

/// Reads a size expression: numbers, names, `+ - * /` and parentheses or braces. Division is
/// exact: `D / H` promises that `H` divides `D` (checked when the sizes are known).
pub fn parse_dim(e: &Expr) -> syn::Result<Dim> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => Ok(Dim::Known(i.base10_parse()?)),
            _ => Err(syn::Error::new_spanned(e, "a size is a whole number, a size name or arithmetic on them")),
        },
        Expr::Path(p) if p.path.get_ident().is_some() && p.qself.is_none() => Ok(Dim::Sym(p.path.get_ident().unwrap().to_string())),
        Expr::Path(p) => Err(syn::Error::new_spanned(
            p,
            "size names are single identifiers (`D_MODEL`); bring a constant from another module into scope with `use`",
        )),
        Expr::Paren(p) => parse_dim(&p.expr),
        Expr::Group(g) => parse_dim(&g.expr),
        Expr::Block(b) if b.block.stmts.len() == 1 => match &b.block.stmts[0] {
            syn::Stmt::Expr(inner, None) => parse_dim(inner),
            other => Err(syn::Error::new_spanned(other, "a size expression in braces holds one expression: `{4 * D}`")),
        },
        Expr::Binary(b) => {
            let (l, r) = (parse_dim(&b.left)?, parse_dim(&b.right)?);
            match b.op {
                BinOp::Add(_) => Ok(l.add(&r)),
                BinOp::Sub(_) => {
                    let d = l.sub(&r);
                    if matches!(&d, Dim::Expr(p) if p.as_constant().is_some()) || d == Dim::Known(0) {
                        return Err(syn::Error::new_spanned(e, format!("this size is {d}; sizes must be positive")));
                    }
                    Ok(d)
                }
                BinOp::Mul(_) => Ok(l.mul(&r)),
                BinOp::Div(_) => l.div_exact(&r).map_err(|why| syn::Error::new_spanned(e, format!("size division {why}"))),
                _ => Err(syn::Error::new_spanned(b.op, "sizes use `+ - * /`")),
            }
        }
        _ => Err(syn::Error::new_spanned(e, "a size is a whole number, a size name or arithmetic on them (`784`, `D_MODEL`, `4 * D`)")),
    }
}

/// Reads a size written as a generic argument: `784`, `D`, `D_MODEL`, `{4 * D}`.
pub fn parse_dim_arg(arg: &syn::GenericArgument) -> syn::Result<Option<Dim>> {
    match arg {
        syn::GenericArgument::Const(e) => parse_dim(e).map(Some),
        syn::GenericArgument::Type(Type::Path(p)) if p.qself.is_none() && p.path.get_ident().is_some() => {
            Ok(Some(Dim::Sym(p.path.get_ident().unwrap().to_string())))
        }
        _ => Ok(None),
    }
}

/// The Rust type of a dim: `Const<784>`, `B`, `Prod<Const<4>, D>`.
pub fn dim_type(d: &Dim, scope: &Scope, span: Span) -> TokenStream {
    let sh = quote_spanned!(span=> ::tensorbrain::shape);
    match d {
        Dim::Known(n) => quote_spanned!(span=> #sh::Const<#n>),
        Dim::Sym(s) => sym_type(s, scope, span),
        Dim::Expr(p) => poly_type(p, scope, span),
    }
}

fn sym_type(s: &str, scope: &Scope, span: Span) -> TokenStream {
    let id = syn::Ident::new(s, span);
    match scope.kind(s) {
        SymKind::Forward | SymKind::TypeParam => quote!(#id),
        SymKind::ConstParam => quote_spanned!(span=> ::tensorbrain::shape::Const<#id>),
        SymKind::NamedConst => quote_spanned!(span=> ::tensorbrain::shape::Const<{ #id }>),
    }
}

fn poly_type(p: &Poly, scope: &Scope, span: Span) -> TokenStream {
    let sh = quote_spanned!(span=> ::tensorbrain::shape);
    let term = |atoms: &[Atom], c: i64| -> TokenStream {
        let mut parts: Vec<TokenStream> = Vec::new();
        let mag = c.unsigned_abs() as usize;
        if mag != 1 || atoms.is_empty() {
            parts.push(quote_spanned!(span=> #sh::Const<#mag>));
        }
        for a in atoms {
            parts.push(match a {
                Atom::Sym(s) => sym_type(s, scope, span),
                Atom::Div { num, den, exact } => {
                    let (n, d) = (poly_type(num, scope, span), poly_type(den, scope, span));
                    if *exact {
                        quote_spanned!(span=> #sh::Quot<#n, #d>)
                    } else {
                        quote_spanned!(span=> #sh::FloorQuot<#n, #d>)
                    }
                }
            });
        }
        fold(parts, |a, b| quote_spanned!(span=> #sh::Prod<#a, #b>))
    };
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (atoms, c) in p.terms() {
        if c > 0 {
            pos.push(term(atoms, c));
        } else {
            neg.push(term(atoms, c));
        }
    }
    let sum = |v: Vec<TokenStream>| fold(v, |a, b| quote_spanned!(span=> #sh::Sum<#a, #b>));
    if pos.is_empty() {
        pos.push(quote_spanned!(span=> #sh::Const<0>));
    }
    if neg.is_empty() {
        sum(pos)
    } else {
        let (p, n) = (sum(pos), sum(neg));
        quote_spanned!(span=> #sh::Diff<#p, #n>)
    }
}

fn fold(parts: Vec<TokenStream>, f: impl Fn(TokenStream, TokenStream) -> TokenStream) -> TokenStream {
    let mut it = parts.into_iter();
    let first = it.next().unwrap_or_else(|| quote!(::tensorbrain::shape::Const<1>));
    it.fold(first, f)
}

/// A `usize` expression for a static dim (no `forward` symbols), valid inside the model's
/// generic impl: `<D as Size>::N * 4`.
pub fn dim_value(d: &Dim, scope: &Scope) -> TokenStream {
    match d {
        Dim::Known(n) => quote!(#n),
        _ => poly_value(&d.poly(), scope),
    }
}

/// An `i128` expression for a static dim that may be negative (a difference of sizes).
pub fn dim_value_signed(d: &Dim, scope: &Scope) -> TokenStream {
    let v = poly_terms(&d.poly(), scope);
    quote!((#v))
}

fn poly_value(p: &Poly, scope: &Scope) -> TokenStream {
    let v = poly_terms(p, scope);
    quote!(((#v) as usize))
}

/// The sum of a polynomial's terms as an `i128` expression.
fn poly_terms(p: &Poly, scope: &Scope) -> TokenStream {
    let sym = |s: &str| -> TokenStream {
        let id = syn::Ident::new(s, Span::call_site());
        match scope.kind(s) {
            SymKind::TypeParam => quote!(<#id as ::tensorbrain::shape::Size>::N),
            SymKind::ConstParam | SymKind::NamedConst => quote!(#id),
            // Callers pass static dims only.
            SymKind::Forward => quote!(0i128),
        }
    };
    let terms: Vec<TokenStream> = p
        .terms()
        .map(|(atoms, c)| {
            let factors = atoms.iter().map(|a| match a {
                Atom::Sym(s) => sym(s),
                Atom::Div { num, den, .. } => {
                    let (n, d) = (poly_terms(num, scope), poly_terms(den, scope));
                    quote!(((#n) / (#d)))
                }
            });
            let c = c as i128;
            quote!((#c #(* (#factors as i128))*))
        })
        .collect();
    if terms.is_empty() {
        return quote!(0i128);
    }
    quote!((#(#terms)+*))
}

/// Tokens for the IR's `Dim` (expressions rebuilt term by term).
pub fn dim_tokens(d: &Dim) -> TokenStream {
    match d {
        Dim::Known(v) => quote!(::tensorbrain::ir::Dim::Known(#v)),
        Dim::Sym(name) => quote!(::tensorbrain::ir::Dim::Sym(#name.to_string())),
        Dim::Expr(p) => {
            let p = poly_tokens(p);
            quote!(::tensorbrain::ir::Dim::from_poly(#p))
        }
    }
}

fn poly_tokens(p: &Poly) -> TokenStream {
    let terms = p.terms().map(|(atoms, c)| {
        let atoms = atoms.iter().map(|a| match a {
            Atom::Sym(s) => quote!(::tensorbrain::ir::Atom::Sym(#s.to_string())),
            Atom::Div { num, den, exact } => {
                let (num, den) = (poly_tokens(num), poly_tokens(den));
                quote!(::tensorbrain::ir::Atom::Div { num: ::std::boxed::Box::new(#num), den: ::std::boxed::Box::new(#den), exact: #exact })
            }
        });
        quote!((vec![#(#atoms),*], #c))
    });
    quote!(::tensorbrain::ir::Poly::from_parts(vec![#(#terms),*]))
}

/// A dim as Rust expression text that [`parse_dim`] reads back (floor divisions as
/// `__floor(a, b)`), for signatures passed between macro expansions.
pub fn dim_source(d: &Dim) -> String {
    fn poly(p: &Poly) -> String {
        let terms: Vec<String> = p
            .terms()
            .map(|(atoms, c)| {
                let mut f: Vec<String> = vec![format!("({c})")];
                for a in atoms {
                    f.push(match a {
                        Atom::Sym(s) => s.clone(),
                        Atom::Div { num, den, exact: true } => format!("(({}) / ({}))", poly(num), poly(den)),
                        Atom::Div { num, den, exact: false } => format!("__floor({}, {})", poly(num), poly(den)),
                    });
                }
                f.join(" * ")
            })
            .collect();
        if terms.is_empty() {
            "0".into()
        } else {
            terms.join(" + ")
        }
    }
    match d {
        Dim::Known(n) => n.to_string(),
        Dim::Sym(s) => s.clone(),
        Dim::Expr(p) => poly(p),
    }
}

/// Reads [`dim_source`] text back (it may hold negative coefficients and floor divisions).
pub fn parse_dim_source(e: &Expr) -> syn::Result<Dim> {
    fn go(e: &Expr) -> syn::Result<Poly> {
        Ok(match e {
            Expr::Lit(l) => match &l.lit {
                Lit::Int(i) => Poly::constant(i.base10_parse()?),
                _ => return Err(syn::Error::new_spanned(e, "bad size")),
            },
            Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => go(&u.expr)?.neg(),
            Expr::Path(p) => Poly::sym(p.path.to_token_stream().to_string()),
            Expr::Paren(p) => go(&p.expr)?,
            Expr::Binary(b) => {
                let (l, r) = (go(&b.left)?, go(&b.right)?);
                match b.op {
                    BinOp::Add(_) => l.add(&r),
                    BinOp::Sub(_) => l.sub(&r),
                    BinOp::Mul(_) => l.mul(&r),
                    BinOp::Div(_) => l.div_exact(&r).map_err(|w| syn::Error::new_spanned(e, w))?,
                    _ => return Err(syn::Error::new_spanned(e, "bad size")),
                }
            }
            Expr::Call(c) if c.args.len() == 2 && c.func.to_token_stream().to_string() == "__floor" => {
                let (n, d) = (go(&c.args[0])?, go(&c.args[1])?);
                n.div_floor(&d).map_err(|w| syn::Error::new_spanned(e, w))?
            }
            _ => return Err(syn::Error::new_spanned(e, "bad size")),
        })
    }
    Ok(Dim::from_poly(go(e)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim(s: &str) -> Dim {
        parse_dim(&syn::parse_str(s).unwrap()).unwrap()
    }

    #[test]
    fn names_by_convention() {
        assert!(is_const_name("D_MODEL"));
        assert!(is_const_name("HIDDEN"));
        assert!(!is_const_name("B"));
        assert!(!is_const_name("T2"));
        assert!(!is_const_name("Seq"));
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(dim("4 * D"), dim("D * 4"));
        assert_eq!(dim("2 * (2 * D)"), dim("{4 * D}"));
        assert_eq!(dim("{4 * 64}"), Dim::Known(256));
        assert_eq!(dim("H * (D / H)"), dim("D"));
    }

    #[test]
    fn source_round_trip() {
        for s in ["4 * D", "D / H", "B * T * 64", "2 * C + 1", "784"] {
            let d = dim(s);
            let back = parse_dim_source(&syn::parse_str(&dim_source(&d)).unwrap()).unwrap();
            assert_eq!(back, d, "{s}");
        }
        let floor = Dim::Sym("H".into()).sub(&Dim::Known(1)).div_floor(&Dim::Known(2)).unwrap().add(&Dim::Known(1));
        let back = parse_dim_source(&syn::parse_str(&dim_source(&floor)).unwrap()).unwrap();
        assert_eq!(back, floor);
    }
}
