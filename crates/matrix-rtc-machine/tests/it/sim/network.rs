//! The network between the clients and the server: a latency per trip, and the faults of the
//! schedule's windows.
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::schedule::{Fault, NetPlan, Window};

/// What happens to one trip between a client and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trip {
    /// It arrives after this many ms.
    After(u64),
    /// It is lost; the window ends at this instant.
    Lost { until: u64 },
    /// Refused at once (a network error comes back).
    Refused,
}

#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) net: NetPlan,
    pub(crate) windows: Vec<Window>,
}

impl Network {
    /// The fault of `client` at `at`, with the window's end.
    pub(crate) fn client_fault(&self, client: usize, at: u64) -> Option<(Fault, u64)> {
        self.windows
            .iter()
            .rev()
            .find(|w| w.client == Some(client) && w.from <= at && at < w.to)
            .map(|w| (w.fault, w.to))
    }

    /// The server's fault at `at`.
    pub(crate) fn server_fault(&self, at: u64) -> Option<Fault> {
        self.windows
            .iter()
            .rev()
            .find(|w| w.client.is_none() && w.from <= at && at < w.to)
            .map(|w| w.fault)
    }

    pub(crate) fn latency(&self, rng: &mut ChaCha8Rng) -> u64 {
        rng.random_range(self.net.latency_min..=self.net.latency_max)
    }

    /// A trip of `client` starting at `at` (a request, an answer, a delivery). With
    /// `answer`, answers lost by a `LoseAnswers` window are lost too.
    pub(crate) fn trip(&self, client: usize, at: u64, answer: bool, rng: &mut ChaCha8Rng) -> Trip {
        match self.client_fault(client, at) {
            Some((Fault::Partition { refuse: true }, _)) if !answer => Trip::Refused,
            Some((Fault::Partition { .. }, until)) => Trip::Lost { until },
            Some((Fault::LoseAnswers, until)) if answer => Trip::Lost { until },
            Some((Fault::Slow { latency }, _)) => Trip::After(latency),
            _ => Trip::After(self.latency(rng)),
        }
    }

    /// A delivery to `client` at `at` (sync, pages, keys): never refused, lost while cut off.
    pub(crate) fn delivery(&self, client: usize, at: u64, rng: &mut ChaCha8Rng) -> Trip {
        match self.client_fault(client, at) {
            Some((Fault::Partition { .. }, until)) => Trip::Lost { until },
            Some((Fault::Slow { latency }, _)) => Trip::After(latency),
            _ => Trip::After(self.latency(rng)),
        }
    }
}
