//! Ring collectives over point-to-point messages (the bandwidth-optimal algorithm NCCL and
//! Horovod use): each rank talks only to its neighbours, and every element is reduced exactly
//! once, so all ranks end with bit-identical results.

use super::error::{DistError, DistResult};
use super::group::{ProcessGroup, ReduceOp};
use super::payload::{Elem, Payload};

/// Chunk `c` of `n` elements split into `world` nearly equal parts.
fn bounds(n: usize, world: usize, c: usize) -> std::ops::Range<usize> {
    c * n / world..(c + 1) * n / world
}

fn take<T: Elem, G: ProcessGroup + ?Sized>(g: &G, op: &'static str, src: usize, len: usize) -> DistResult<Vec<T>> {
    let p = g.recv_payload(op, src)?;
    let got = (p.len(), p.dtype());
    match T::unwrap(p) {
        Ok(v) if v.len() == len => Ok(v),
        _ => Err(DistError::Invalid {
            rank: g.rank(),
            op,
            msg: format!("rank {src} sent {} {} elements where {len} were expected; every rank must pass the same shape and dtype", got.0, got.1),
        }),
    }
}

/// In place: afterwards chunk `rank` of `buf` holds the sum over ranks (other chunks hold
/// partial sums).
fn reduce_scatter_in_place<T: Elem, G: ProcessGroup + ?Sized>(g: &G, op: &'static str, buf: &mut [T]) -> DistResult<()> {
    let (w, r, n) = (g.world_size(), g.rank(), buf.len());
    let (next, prev) = ((r + 1) % w, (r + w - 1) % w);
    for s in 0..w.saturating_sub(1) {
        // Step s: pass on chunk r-s-1 (which this rank has reduced s+1 contributions into) and
        // add the incoming chunk r-s-2; after w-1 steps chunk r is complete here.
        let send_c = (r + 2 * w - s - 1) % w;
        let recv_c = (r + 2 * w - s - 2) % w;
        g.send_payload(op, next, T::wrap(buf[bounds(n, w, send_c)].to_vec()))?;
        let incoming = take::<T, G>(g, op, prev, bounds(n, w, recv_c).len())?;
        for (d, x) in buf[bounds(n, w, recv_c)].iter_mut().zip(incoming) {
            *d += x;
        }
    }
    Ok(())
}

/// In place: chunk `rank` of `buf` is complete here; afterwards every chunk is.
fn all_gather_in_place<T: Elem, G: ProcessGroup + ?Sized>(g: &G, op: &'static str, buf: &mut [T]) -> DistResult<()> {
    let (w, r, n) = (g.world_size(), g.rank(), buf.len());
    let (next, prev) = ((r + 1) % w, (r + w - 1) % w);
    for s in 0..w.saturating_sub(1) {
        let send_c = (r + w - s) % w;
        let recv_c = (r + 2 * w - s - 1) % w;
        g.send_payload(op, next, T::wrap(buf[bounds(n, w, send_c)].to_vec()))?;
        let incoming = take::<T, G>(g, op, prev, bounds(n, w, recv_c).len())?;
        buf[bounds(n, w, recv_c)].copy_from_slice(&incoming);
    }
    Ok(())
}

fn all_reduce_vec<T: Elem, G: ProcessGroup + ?Sized>(g: &G, buf: &mut [T], op: ReduceOp) -> DistResult<()> {
    reduce_scatter_in_place(g, "all_reduce", buf)?;
    if op == ReduceOp::Avg {
        // Scale only the chunk this rank owns, so every element is divided exactly once and
        // the all-gather copies identical values everywhere.
        let w = g.world_size();
        let mine = bounds(buf.len(), w, g.rank());
        for x in &mut buf[mine] {
            *x = x.div_by(w as f64);
        }
    }
    all_gather_in_place(g, "all_reduce", buf)
}

pub(crate) fn all_reduce<G: ProcessGroup + ?Sized>(g: &G, data: &mut Payload, op: ReduceOp) -> DistResult<()> {
    match data {
        Payload::F32(v) => all_reduce_vec(g, v, op),
        Payload::F64(v) => all_reduce_vec(g, v, op),
    }?;
    g.flush_sends("all_reduce")
}

fn reduce_scatter_vec<T: Elem, G: ProcessGroup + ?Sized>(g: &G, op: &'static str, mut buf: Vec<T>, how: ReduceOp) -> DistResult<Vec<T>> {
    reduce_scatter_in_place(g, op, &mut buf)?;
    let w = g.world_size();
    let mut mine = buf[bounds(buf.len(), w, g.rank())].to_vec();
    if how == ReduceOp::Avg {
        mine.iter_mut().for_each(|x| *x = x.div_by(w as f64));
    }
    Ok(mine)
}

/// This rank's chunk of the reduction of `data` (split into `world` chunks).
pub(crate) fn reduce_scatter<G: ProcessGroup + ?Sized>(g: &G, op: &'static str, data: Payload, how: ReduceOp) -> DistResult<Payload> {
    let mine = match data {
        Payload::F32(v) => Payload::F32(reduce_scatter_vec(g, op, v, how)?),
        Payload::F64(v) => Payload::F64(reduce_scatter_vec(g, op, v, how)?),
    };
    g.flush_sends(op)?;
    Ok(mine)
}

fn all_gather_vec<T: Elem, G: ProcessGroup + ?Sized>(g: &G, op: &'static str, mine: Vec<T>) -> DistResult<Vec<Payload>> {
    let (w, r, n) = (g.world_size(), g.rank(), mine.len());
    let mut buf = vec![T::default(); n * w];
    buf[r * n..(r + 1) * n].copy_from_slice(&mine);
    all_gather_in_place(g, op, &mut buf)?;
    Ok(buf.chunks(n.max(1)).take(w).map(|c| T::wrap(c.to_vec())).chain(std::iter::repeat_with(|| T::wrap(Vec::new()))).take(w).collect())
}

/// Every rank's `mine` (all the same length), in rank order.
pub(crate) fn all_gather<G: ProcessGroup + ?Sized>(g: &G, op: &'static str, mine: Payload) -> DistResult<Vec<Payload>> {
    let all = match mine {
        Payload::F32(v) => all_gather_vec(g, op, v),
        Payload::F64(v) => all_gather_vec(g, op, v),
    }?;
    g.flush_sends(op)?;
    Ok(all)
}
