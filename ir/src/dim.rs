//! Symbolic sizes: integer polynomials over named sizes, in one canonical form.
//!
//! A dim is a number (`784`), a name (`B`, a model's size parameter `D`, a named constant
//! `D_MODEL`) or an expression over them (`4*D`, `B*T`, `D/H`, `(H-1)/2+1`). Every expression is
//! kept as a sum of terms `coefficient * atom * atom ...`, sorted, with like terms merged, so two
//! expressions that are equal as polynomials are equal as values: `4*D`, `D*4` and `2*(2*D)`
//! are one [`Poly`]. Divisions that do not simplify stay as atoms: exact ones (`D/H`, written by
//! the user, who promises `H` divides `D`; `H * (D/H)` simplifies back to `D`) and floor ones
//! (convolution output sizes).

use std::fmt;

/// An indivisible factor of a term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// A named size.
    Sym(String),
    /// `num / den` that does not simplify. `exact` divisions are promises that `den` divides
    /// `num` (checked when the sizes are known); the others round down.
    Div { num: Box<Poly>, den: Box<Poly>, exact: bool },
}

/// A term's atoms, sorted, repeated for powers (`D*D`).
type Monomial = Vec<Atom>;

/// A polynomial with integer coefficients over [`Atom`]s, in canonical form: terms sorted by
/// monomial, no zero coefficients, no repeated monomials.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Poly {
    terms: Vec<(Monomial, i64)>,
}

impl Poly {
    pub fn constant(c: i64) -> Poly {
        Poly::from_terms(vec![(vec![], c)])
    }

    pub fn sym(name: impl Into<String>) -> Poly {
        Poly::from_terms(vec![(vec![Atom::Sym(name.into())], 1)])
    }

    fn atom(a: Atom) -> Poly {
        Poly::from_terms(vec![(vec![a], 1)])
    }

    /// Normalises any list of terms.
    fn from_terms(mut terms: Vec<(Monomial, i64)>) -> Poly {
        for (m, _) in &mut terms {
            m.sort();
        }
        terms.sort();
        let mut out: Vec<(Monomial, i64)> = Vec::with_capacity(terms.len());
        for (m, c) in terms {
            match out.last_mut() {
                Some((lm, lc)) if *lm == m => *lc += c,
                _ => out.push((m, c)),
            }
        }
        out.retain(|(_, c)| *c != 0);
        Poly { terms: out }
    }

    /// The value if the polynomial has no atoms.
    pub fn as_constant(&self) -> Option<i64> {
        match self.terms.as_slice() {
            [] => Some(0),
            [(m, c)] if m.is_empty() => Some(*c),
            _ => None,
        }
    }

    /// The name if the polynomial is exactly one symbol.
    pub fn as_sym(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [(m, 1)] => match m.as_slice() {
                [Atom::Sym(s)] => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn add(&self, o: &Poly) -> Poly {
        Poly::from_terms(self.terms.iter().chain(&o.terms).cloned().collect())
    }

    pub fn neg(&self) -> Poly {
        Poly { terms: self.terms.iter().map(|(m, c)| (m.clone(), -c)).collect() }
    }

    pub fn sub(&self, o: &Poly) -> Poly {
        self.add(&o.neg())
    }

    pub fn mul(&self, o: &Poly) -> Poly {
        let mut terms = Vec::new();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &o.terms {
                let mut m = ma.clone();
                m.extend(mb.iter().cloned());
                terms.push((m, ca * cb));
            }
        }
        Poly::from_terms(terms).cancel_exact_divisions()
    }

    /// `self / den` where the caller promises exactness (a head split `D / H`).
    pub fn div_exact(&self, den: &Poly) -> Result<Poly, String> {
        self.divide(den, true)
    }

    /// `self / den` rounded down (output sizes of strided windows).
    pub fn div_floor(&self, den: &Poly) -> Result<Poly, String> {
        self.divide(den, false)
    }

    fn divide(&self, den: &Poly, exact: bool) -> Result<Poly, String> {
        if let Some(d) = den.as_constant() {
            if d <= 0 {
                return Err(format!("division of {self} by {d}"));
            }
            if let Some(n) = self.as_constant() {
                if exact && n % d != 0 {
                    return Err(format!("{n} is not divisible by {d}"));
                }
                return Ok(Poly::constant(n.div_euclid(d)));
            }
            if d == 1 {
                return Ok(self.clone());
            }
        }
        if let Some(q) = self.divide_termwise(den) {
            return Ok(q);
        }
        Ok(Poly::atom(Atom::Div { num: Box::new(self.clone()), den: Box::new(den.clone()), exact }))
    }

    /// The quotient when `den` is a single term dividing every term of `self` exactly.
    fn divide_termwise(&self, den: &Poly) -> Option<Poly> {
        let [(dm, dc)] = den.terms.as_slice() else { return None };
        if *dc <= 0 {
            return None;
        }
        let mut terms = Vec::with_capacity(self.terms.len());
        for (m, c) in &self.terms {
            if c % dc != 0 {
                return None;
            }
            terms.push((remove_atoms(m, dm)?, c / dc));
        }
        Some(Poly::from_terms(terms))
    }

    /// `H * (D/H)` -> `D`: a term holding an exact division and every factor of its
    /// denominator is rewritten to the numerator times the rest.
    fn cancel_exact_divisions(self) -> Poly {
        let mut changed = false;
        let mut out = Poly::default();
        for (m, c) in &self.terms {
            let mut replaced = None;
            for (i, a) in m.iter().enumerate() {
                let Atom::Div { num, den, exact: true } = a else { continue };
                let [(dm, dc)] = den.terms.as_slice() else { continue };
                if c % dc != 0 {
                    continue;
                }
                let mut rest = m.clone();
                rest.remove(i);
                if let Some(rest) = remove_atoms(&rest, dm) {
                    replaced = Some(num.mul(&Poly::from_terms(vec![(rest, c / dc)])));
                    break;
                }
            }
            match replaced {
                Some(p) => {
                    changed = true;
                    out = out.add(&p);
                }
                None => out = out.add(&Poly { terms: vec![(m.clone(), *c)] }),
            }
        }
        if changed {
            out
        } else {
            self
        }
    }

    /// Evaluates with every symbol's value from `env`; `None` if a symbol is unbound, a
    /// division by zero happens, or an exact division is not exact.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for a in m {
                let x = match a {
                    Atom::Sym(s) => env(s)?,
                    Atom::Div { num, den, exact } => {
                        let (n, d) = (num.eval(env)?, den.eval(env)?);
                        if d <= 0 || (*exact && n % d != 0) {
                            return None;
                        }
                        n.div_euclid(d)
                    }
                };
                v = v.checked_mul(x)?;
            }
            total = total.checked_add(v)?;
        }
        Some(total)
    }

    /// Every symbol name the polynomial mentions, in order of first appearance.
    pub fn symbols(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_symbols(&mut out);
        out
    }

    fn collect_symbols(&self, out: &mut Vec<String>) {
        for (m, _) in &self.terms {
            for a in m {
                match a {
                    Atom::Sym(s) => {
                        if !out.contains(s) {
                            out.push(s.clone());
                        }
                    }
                    Atom::Div { num, den, .. } => {
                        num.collect_symbols(out);
                        den.collect_symbols(out);
                    }
                }
            }
        }
    }

    /// Replaces symbols by polynomials (`D` -> `2*C` when a generic model is used at `2*C`).
    pub fn substitute(&self, f: &dyn Fn(&str) -> Option<Poly>) -> Result<Poly, String> {
        let mut out = Poly::default();
        for (m, c) in &self.terms {
            let mut t = Poly::constant(*c);
            for a in m {
                let v = match a {
                    Atom::Sym(s) => f(s).unwrap_or_else(|| Poly::sym(s.clone())),
                    Atom::Div { num, den, exact } => {
                        let (n, d) = (num.substitute(f)?, den.substitute(f)?);
                        n.divide(&d, *exact)?
                    }
                };
                t = t.mul(&v);
            }
            out = out.add(&t);
        }
        Ok(out)
    }

    /// The exact divisions inside, as `(numerator, denominator)` pairs: each is a
    /// divisibility the sizes must satisfy.
    pub fn exact_divisions(&self) -> Vec<(Poly, Poly)> {
        let mut out = Vec::new();
        for (m, _) in &self.terms {
            for a in m {
                if let Atom::Div { num, den, exact } = a {
                    if *exact {
                        out.push(((**num).clone(), (**den).clone()));
                    }
                    out.extend(num.exact_divisions());
                    out.extend(den.exact_divisions());
                }
            }
        }
        out
    }

    /// The terms, for code generation: `(atoms, coefficient)`.
    pub fn terms(&self) -> impl Iterator<Item = (&[Atom], i64)> {
        self.terms.iter().map(|(m, c)| (m.as_slice(), *c))
    }

    /// Rebuilds a polynomial from terms (normalising them).
    pub fn from_parts(terms: Vec<(Vec<Atom>, i64)>) -> Poly {
        Poly::from_terms(terms).cancel_exact_divisions()
    }

    fn is_single_term(&self) -> bool {
        self.terms.len() <= 1
    }
}

/// `m` without the atoms of `d` (as a multiset), or None if `m` lacks one.
fn remove_atoms(m: &[Atom], d: &[Atom]) -> Option<Monomial> {
    let mut rest = m.to_vec();
    for a in d {
        let i = rest.iter().position(|x| x == a)?;
        rest.remove(i);
    }
    Some(rest)
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::Div { num, den, .. } => {
                let wrap = |p: &Poly| if p.is_single_term() && p.as_constant().is_some_and(|c| c >= 0) || p.as_sym().is_some() { p.to_string() } else { format!("({p})") };
                write!(f, "{}/{}", wrap(num), wrap(den))
            }
        }
    }
}

impl fmt::Display for Poly {
    /// Highest-degree terms first, the constant last: `4*D`, `B*T`, `2*C+1`, `(H-3)/2+1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut order: Vec<&(Monomial, i64)> = self.terms.iter().collect();
        order.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (i, (m, c)) in order.into_iter().enumerate() {
            let (sign, mag) = if *c < 0 { ("-", c.unsigned_abs()) } else { ("+", *c as u64) };
            if i > 0 || sign == "-" {
                f.write_str(sign)?;
            }
            let atoms: Vec<String> = m.iter().map(|a| a.to_string()).collect();
            match (mag, atoms.is_empty()) {
                (_, true) => write!(f, "{mag}")?,
                (1, false) => f.write_str(&atoms.join("*"))?,
                (_, false) => write!(f, "{mag}*{}", atoms.join("*"))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &str) -> Poly {
        Poly::sym(n)
    }
    fn c(v: i64) -> Poly {
        Poly::constant(v)
    }

    #[test]
    fn equal_polynomials_are_equal_values() {
        let d = s("D");
        assert_eq!(c(4).mul(&d), d.mul(&c(4)));
        assert_eq!(c(2).mul(&c(2).mul(&d)), c(4).mul(&d));
        assert_eq!(d.add(&d).add(&d), c(3).mul(&d));
        assert_eq!(s("B").mul(&s("T")), s("T").mul(&s("B")));
        assert_eq!(d.sub(&d), c(0));
        assert_ne!(c(4).mul(&d), c(3).mul(&d));
    }

    #[test]
    fn exact_division_cancels() {
        let (d, h) = (s("D"), s("H"));
        let dh = d.div_exact(&h).unwrap();
        assert_eq!(h.mul(&dh), d);
        assert_eq!(s("B").mul(&h).mul(&dh), s("B").mul(&d));
        assert_eq!(c(4).mul(&d).div_exact(&c(2)).unwrap(), c(2).mul(&d));
        assert_eq!(c(64).div_exact(&c(4)).unwrap(), c(16));
        assert!(c(64).div_exact(&c(5)).is_err());
        // 2 * (D/4) does not cancel: 4 does not divide 2.
        let q = d.div_exact(&c(4)).unwrap();
        assert_ne!(c(2).mul(&q), d);
        assert_eq!(c(4).mul(&q), d);
        assert_eq!(c(8).mul(&q), c(2).mul(&d));
    }

    #[test]
    fn floor_division_and_eval() {
        let h = s("H");
        let out = h.sub(&c(1)).div_floor(&c(2)).unwrap().add(&c(1));
        assert_eq!(out.to_string(), "(H-1)/2+1");
        let env = |n: &str| (n == "H").then_some(28);
        assert_eq!(out.eval(&env), Some(14));
        assert_eq!(h.sub(&c(3)).div_floor(&c(1)).unwrap().add(&c(1)), h.sub(&c(2)));
    }

    #[test]
    fn display() {
        assert_eq!(c(4).mul(&s("D")).to_string(), "4*D");
        assert_eq!(s("B").mul(&s("T")).mul(&c(64)).to_string(), "64*B*T");
        assert_eq!(c(2).mul(&s("C")).add(&c(1)).to_string(), "2*C+1");
        assert_eq!(s("D").div_exact(&s("H")).unwrap().to_string(), "D/H");
        assert_eq!(c(0).sub(&s("D")).to_string(), "-D");
    }

    #[test]
    fn substitute_generic_parameters() {
        // An Ffn<D> with 4*D inside, used as Ffn<2*C>.
        let inner = c(4).mul(&s("D"));
        let got = inner.substitute(&|n| (n == "D").then(|| c(2).mul(&s("C")))).unwrap();
        assert_eq!(got, c(8).mul(&s("C")));
        // D/H at D = 64, H = 4
        let split = s("D").div_exact(&s("H")).unwrap();
        let got = split.substitute(&|n| match n {
            "D" => Some(c(64)),
            "H" => Some(c(4)),
            _ => None,
        });
        assert_eq!(got.unwrap(), c(16));
        let bad = split.substitute(&|n| match n {
            "D" => Some(c(64)),
            "H" => Some(c(5)),
            _ => None,
        });
        assert!(bad.is_err());
    }
}
