//! `gadgetctl --remote-address a,b,...`: one command over several
//! daemons. Owns the address list and the nodes' names, and the
//! combining of array data sources across nodes (upstream's `combiner`
//! operator): a snapshotter's or a topper's arrays from every node become
//! one array before the client's sort and limit see them.
//!
//! Does not own: the streams (`gadgetctl`), the transport (`remote`).
//! Everything here is pure, so it is tested without a daemon.

use anyhow::bail;

use super::remote::Address;

/// One daemon of a fan-out: its address and the name its events carry
/// in the `node` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What events and messages call it.
    pub name: String,
    /// Where it listens.
    pub addr: Address,
}

/// The comma-separated `--remote-address` as targets, in the order
/// given. A TCP daemon is named by its IP (as upstream's gRPC runtime
/// names a node by its URL's host), with the port when two share an IP;
/// a unix socket is `local` when it is the only one, else its path. The
/// same address twice is refused: its events would be counted twice.
pub fn targets(list: &str) -> anyhow::Result<Vec<Target>> {
    let mut addrs: Vec<Address> = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            bail!("--remote-address {list:?}: an empty address in the list");
        }
        let a = Address::parse(part)?;
        if addrs.contains(&a) {
            bail!("--remote-address: {a} is given twice");
        }
        addrs.push(a);
    }
    let unix = addrs
        .iter()
        .filter(|a| matches!(a, Address::Unix(_)))
        .count();
    Ok(addrs
        .iter()
        .map(|a| {
            let name = match a {
                Address::Unix(_) if unix == 1 => "local".to_owned(),
                Address::Unix(p) => p.display().to_string(),
                Address::Tcp(s) => {
                    let same_ip = addrs
                        .iter()
                        .filter(|o| matches!(o, Address::Tcp(t) if t.ip() == s.ip()))
                        .count();
                    if same_ip > 1 {
                        s.to_string()
                    } else {
                        s.ip().to_string()
                    }
                }
            };
            Target {
                name,
                addr: a.clone(),
            }
        })
        .collect())
}

/// The name of the field every event carries in a fan-out.
pub const NODE_FIELD: &str = "node";

/// One array data source's rounds across nodes: a round is the arrays of
/// every node still streaming, emitted as one. A node that sends its
/// next array before the others sent theirs closes the round early (its
/// interval is shorter, or another node is slow): the round goes out as
/// it is, so nothing waits on a timer and nothing is held back longer
/// than one interval of the fastest node. A node that ended (done, or
/// dead) is no longer waited for.
#[derive(Debug)]
pub struct Combiner<T> {
    items: Vec<T>,
    from: Vec<bool>,
    live: Vec<bool>,
}

impl<T> Combiner<T> {
    /// A combiner of `nodes` nodes, all streaming.
    pub fn new(nodes: usize) -> Self {
        Self {
            items: Vec::new(),
            from: vec![false; nodes],
            live: vec![true; nodes],
        }
    }

    fn complete(&self) -> bool {
        self.from.iter().any(|f| *f) && self.from.iter().zip(&self.live).all(|(f, l)| *f || !*l)
    }

    fn take(&mut self) -> Vec<T> {
        self.from.iter_mut().for_each(|f| *f = false);
        std::mem::take(&mut self.items)
    }

    /// `node`'s array: the rounds this completes, in order (none, one,
    /// or the round it closed early and then its own).
    pub fn add(&mut self, node: usize, items: impl IntoIterator<Item = T>) -> Vec<Vec<T>> {
        let mut out = Vec::new();
        if node >= self.from.len() {
            return out;
        }
        if self.from[node] {
            out.push(self.take());
        }
        self.items.extend(items);
        self.from[node] = true;
        if self.complete() {
            out.push(self.take());
        }
        out
    }

    /// `node` sends no more: the round, if that completes it.
    pub fn ended(&mut self, node: usize) -> Option<Vec<T>> {
        if let Some(l) = self.live.get_mut(node) {
            *l = false;
        }
        self.complete().then(|| self.take())
    }

    /// What is left when every stream has ended.
    pub fn flush(&mut self) -> Option<Vec<T>> {
        self.from.iter().any(|f| *f).then(|| self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_nodes_by_ip_and_refuses_repeats() {
        let t = targets("tcp://10.0.0.1:9999,tcp://10.0.0.2:9999").unwrap();
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2"]
        );
        let t = targets("tcp://10.0.0.1:1, tcp://10.0.0.1:2,unix:///run/a").unwrap();
        assert_eq!(
            t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["10.0.0.1:1", "10.0.0.1:2", "local"]
        );
        let t = targets("unix:///run/a,unix:///run/b").unwrap();
        assert_eq!(t[1].name, "/run/b");
        assert!(targets("tcp://10.0.0.1:1,tcp://10.0.0.1:1").is_err());
        assert!(targets("tcp://10.0.0.1:1,").is_err());
        assert!(targets("tcp://10.0.0.1:1,localhost:2").is_err());
    }

    #[test]
    fn a_round_is_every_live_node_s_array() {
        let mut c = Combiner::new(3);
        assert!(c.add(0, [1, 2]).is_empty());
        assert!(c.add(2, [5]).is_empty());
        assert_eq!(c.add(1, [3]), vec![vec![1, 2, 5, 3]]);
        // Node 1 dies: the next round needs nodes 0 and 2 only.
        assert!(c.ended(1).is_none());
        assert!(c.add(0, [7]).is_empty());
        assert_eq!(c.add(2, [8]), vec![vec![7, 8]]);
    }

    #[test]
    fn a_node_ahead_closes_the_round_early() {
        let mut c = Combiner::new(2);
        assert!(c.add(0, [1]).is_empty());
        assert_eq!(c.add(0, [2]), vec![vec![1]]);
        assert_eq!(c.add(1, [3]), vec![vec![2, 3]]);
    }

    #[test]
    fn an_ending_node_completes_a_waiting_round() {
        let mut c = Combiner::new(2);
        assert!(c.add(0, [1]).is_empty());
        assert_eq!(c.ended(1), Some(vec![1]));
        assert!(c.flush().is_none());
        let mut c = Combiner::new(2);
        assert!(c.add(0, [1]).is_empty());
        assert_eq!(c.flush(), Some(vec![1]));
        // Out of range is ignored, not a panic.
        assert!(c.add(9, [1]).is_empty());
        assert!(c.ended(9).is_none());
    }
}
