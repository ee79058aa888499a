//! `einsum`: Einstein summation over labelled dims (`"bij,bjk->bik"`), lowered onto
//! `diagonal`, `sum`, `permute`, `reshape` and batched `matmul`, so gradients come for free.
//!
//! Supported: explicit (`->`) and implicit outputs (the labels seen once, alphabetically),
//! `...` for broadcast dims, repeated labels within an operand (diagonals), and any number of
//! operands (contracted left to right).

use std::collections::BTreeMap;

use crate::tensor::{Error, Result, Tensor};

/// Labels are chars; `...` becomes one label per broadcast dim, drawn from this range
/// (outside what equations may use).
const ELLIPSIS_BASE: u32 = 0x2460;

fn err(msg: impl Into<String>) -> Error {
    Error::Msg(format!("einsum: {}", msg.into()))
}

/// One operand's labels, with `...` expanded to fit its rank.
fn operand_labels(spec: &str, rank: usize, ellipsis_rank: &mut Option<usize>, index: usize) -> Result<Vec<char>> {
    let spec = spec.trim();
    let (before, after) = match spec.find("...") {
        Some(p) => (&spec[..p], Some(&spec[p + 3..])),
        None => (spec, None),
    };
    let check = |part: &str| -> Result<Vec<char>> {
        part.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    Ok(c)
                } else {
                    Err(err(format!("operand {index} has the invalid label {c:?} in {spec:?} (labels are letters; `...` broadcasts)")))
                }
            })
            .collect()
    };
    let mut labels = check(before)?;
    if let Some(after) = after {
        if after.contains('.') {
            return Err(err(format!("operand {index}: `...` may appear once, in {spec:?}")));
        }
        let tail = check(after)?;
        let fixed = labels.len() + tail.len();
        if rank < fixed {
            return Err(err(format!("operand {index} ({spec:?}) names {fixed} dims but has rank {rank}")));
        }
        let n = rank - fixed;
        let known = ellipsis_rank.get_or_insert(n);
        *known = (*known).max(n);
        // Broadcast dims align from the right, like NumPy.
        labels.extend((0..n).map(|i| char::from_u32(ELLIPSIS_BASE + (64 - n + i) as u32).expect("valid char")));
        labels.extend(tail);
    } else if labels.len() != rank {
        return Err(err(format!("operand {index} ({spec:?}) names {} dims but has rank {rank}", labels.len())));
    }
    Ok(labels)
}

fn is_ellipsis(c: char) -> bool {
    c as u32 >= ELLIPSIS_BASE
}

/// A tensor with one label per dim.
struct Term {
    t: Tensor,
    labels: Vec<char>,
}

impl Term {
    /// Takes the diagonal over every repeated label, so each label appears once.
    fn dedup(mut self) -> Result<Term> {
        loop {
            let dup = (0..self.labels.len()).find_map(|i| (i + 1..self.labels.len()).find(|&j| self.labels[j] == self.labels[i]).map(|j| (i, j)));
            let Some((i, j)) = dup else { return Ok(self) };
            if self.t.shape()[i] != self.t.shape()[j] {
                return Err(err(format!("label {:?} is repeated on dims of sizes {} and {}", self.labels[i], self.t.shape()[i], self.t.shape()[j])));
            }
            // diagonal removes dims i and j and appends the diagonal last.
            self.t = self.t.try_diagonal(0, i as isize, j as isize)?;
            let l = self.labels[i];
            self.labels.remove(j);
            self.labels.remove(i);
            self.labels.push(l);
        }
    }

    /// Sums out the labels not in `keep`.
    fn sum_except(self, keep: &[char]) -> Result<Term> {
        let dims: Vec<isize> = self.labels.iter().enumerate().filter(|(_, l)| !keep.contains(l)).map(|(i, _)| i as isize).collect();
        if dims.is_empty() {
            return Ok(self);
        }
        let labels = self.labels.iter().copied().filter(|l| keep.contains(l)).collect();
        Ok(Term { t: self.t.try_sum(&dims, false)?, labels })
    }

    fn size(&self, l: char) -> usize {
        self.labels.iter().position(|&x| x == l).map_or(1, |i| self.t.shape()[i])
    }

    /// Permuted so its labels read `order`, with each label expanded to `sizes[label]`.
    fn arranged(&self, order: &[char], sizes: &BTreeMap<char, usize>) -> Result<Tensor> {
        let perm: Vec<isize> = order.iter().map(|l| self.labels.iter().position(|x| x == l).expect("label present") as isize).collect();
        let t = self.t.try_permute(&perm)?;
        let target: Vec<isize> = order.iter().map(|l| sizes[l] as isize).collect();
        t.try_expand(&target)
    }
}

/// Contracts two terms, keeping the labels in `keep` (the output's and later operands').
fn contract(a: Term, b: Term, keep: &[char]) -> Result<Term> {
    let in_b = |l: &char| b.labels.contains(l);
    let batch: Vec<char> = a.labels.iter().copied().filter(|l| in_b(l) && keep.contains(l)).collect();
    let summed: Vec<char> = a.labels.iter().copied().filter(|l| in_b(l) && !keep.contains(l)).collect();
    let left: Vec<char> = a.labels.iter().copied().filter(|l| !in_b(l)).collect();
    let right: Vec<char> = b.labels.iter().copied().filter(|l| !a.labels.contains(l)).collect();
    let mut sizes = BTreeMap::new();
    for &l in a.labels.iter().chain(&b.labels) {
        let (sa, sb) = (a.size(l), b.size(l));
        if sa != sb && sa != 1 && sb != 1 {
            return Err(err(format!("label {l:?} has size {sa} in one operand and {sb} in another")));
        }
        sizes.insert(l, if sa == 1 { sb } else { sa });
    }
    let prod = |ls: &[char]| ls.iter().map(|l| sizes[l]).product::<usize>() as isize;
    let a_order: Vec<char> = batch.iter().chain(&left).chain(&summed).copied().collect();
    let b_order: Vec<char> = batch.iter().chain(&summed).chain(&right).copied().collect();
    let a3 = a.arranged(&a_order, &sizes)?.try_reshape(&[prod(&batch), prod(&left), prod(&summed)])?;
    let b3 = b.arranged(&b_order, &sizes)?.try_reshape(&[prod(&batch), prod(&summed), prod(&right)])?;
    let out_labels: Vec<char> = batch.iter().chain(&left).chain(&right).copied().collect();
    let out_shape: Vec<isize> = out_labels.iter().map(|l| sizes[l] as isize).collect();
    Ok(Term { t: a3.try_matmul(&b3)?.try_reshape(&out_shape)?, labels: out_labels })
}

impl Tensor {
    /// Einstein summation (`torch.einsum`): `Tensor::einsum("ij,jk->ik", &[&a, &b])`.
    pub fn try_einsum(equation: &str, operands: &[&Tensor]) -> Result<Tensor> {
        let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (eq.as_str(), None),
        };
        let specs: Vec<&str> = lhs.split(',').collect();
        if specs.len() != operands.len() {
            return Err(err(format!("{equation:?} names {} operands but {} were given", specs.len(), operands.len())));
        }
        if operands.is_empty() {
            return Err(err("at least one operand is needed"));
        }
        let mut ellipsis_rank = None;
        let mut terms = Vec::with_capacity(operands.len());
        for (i, (spec, t)) in specs.iter().zip(operands).enumerate() {
            let labels = operand_labels(spec, t.rank(), &mut ellipsis_rank, i)?;
            terms.push(Term { t: (*t).clone(), labels }.dedup()?);
        }
        let n_ell = ellipsis_rank.unwrap_or(0);
        let ell_labels: Vec<char> = (0..n_ell).map(|i| char::from_u32(ELLIPSIS_BASE + (64 - n_ell + i) as u32).expect("valid char")).collect();
        let output: Vec<char> = match rhs {
            Some(r) => {
                let (before, after) = r.split_once("...").map_or((r, None), |(b, a)| (b, Some(a)));
                let mut labels: Vec<char> = before.chars().collect();
                if let Some(after) = after {
                    labels.extend(&ell_labels);
                    labels.extend(after.chars());
                }
                for (i, l) in labels.iter().enumerate() {
                    if !is_ellipsis(*l) && !l.is_ascii_alphabetic() {
                        return Err(err(format!("invalid output label {l:?} in {r:?}")));
                    }
                    if labels[..i].contains(l) {
                        return Err(err(format!("output label {l:?} appears twice in {r:?}")));
                    }
                    if !is_ellipsis(*l) && !terms.iter().any(|t| t.labels.contains(l)) {
                        return Err(err(format!("output label {l:?} does not appear in any operand")));
                    }
                }
                labels
            }
            None => {
                // Implicit: broadcast dims, then the labels used exactly once, alphabetically.
                let mut counts: BTreeMap<char, usize> = BTreeMap::new();
                for spec in &specs {
                    for c in spec.chars().filter(char::is_ascii_alphabetic) {
                        *counts.entry(c).or_default() += 1;
                    }
                }
                ell_labels.iter().copied().chain(counts.into_iter().filter(|&(_, n)| n == 1).map(|(c, _)| c)).collect()
            }
        };
        // The labels still needed once operand i has been folded in: the output's and those of
        // the operands after it.
        let labels_of: Vec<Vec<char>> = terms.iter().map(|t| t.labels.clone()).collect();
        let keep_after = |i: usize| -> Vec<char> { output.iter().chain(labels_of[i + 1..].iter().flatten()).copied().collect() };
        let mut terms = terms.into_iter();
        let mut acc = terms.next().expect("one operand").sum_except(&keep_after(0))?;
        for (k, next) in terms.enumerate() {
            let i = k + 1;
            let mut keep_next = keep_after(i);
            keep_next.extend(&acc.labels);
            let next = next.sum_except(&keep_next)?;
            acc = contract(acc, next, &keep_after(i))?;
        }
        let mut acc = acc.sum_except(&output)?;
        // Broadcast dims that no operand has are size 1.
        for &l in &output {
            if !acc.labels.contains(&l) {
                acc.t = acc.t.try_unsqueeze(acc.t.rank() as isize)?;
                acc.labels.push(l);
            }
        }
        let sizes: BTreeMap<char, usize> = output.iter().map(|&l| (l, acc.size(l))).collect();
        acc.arranged(&output, &sizes)?.try_contiguous()
    }

    #[track_caller]
    pub fn einsum(equation: &str, operands: &[&Tensor]) -> Tensor {
        super::ok(Tensor::try_einsum(equation, operands))
    }
}
