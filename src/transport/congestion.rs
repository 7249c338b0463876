//! Congestion control: which controller paces a connection, and our own
//! delivery-rate controller for long lossy links.
//!
//! quinn's default, Cubic, halves its window at every loss; on a
//! 100 Mbit/s path with a 100 ms round trip and 1% random loss it moves
//! about 1.3 Mbit/s. quinn's BBR keeps the rate but, in quinn 0.11, floods
//! the path (its window is two or more bandwidth-delay products and the
//! pacer ignores BBR's pacing rate), so about half of what it sends is lost.
//! [`Congestion::Rate`], the default, sizes the window from the measured
//! delivery rate and minimum RTT instead (see [`model`]); the others remain
//! available for comparison on real links.
//!
//! A connection that knows its peer can start from what an earlier
//! connection over the same path measured ([`known_path`], [`resume`]).

pub mod model;
#[cfg(test)]
mod simulation;

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use quinn::congestion::{
    BbrConfig, Controller, ControllerFactory, ControllerMetrics, CubicConfig, NewRenoConfig,
};
use quinn_proto::RttEstimator;

pub use self::model::KnownPath;
use self::model::Model;

/// How long what a connection measured of its path is trusted to start
/// the next one: paths change, and an old figure is a guess.
pub const KNOWN_PATH_LIFETIME: Duration = Duration::from_secs(3600);

/// The congestion controllers a connection can use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Congestion {
    /// Window from the measured delivery rate and minimum RTT; keeps a lossy
    /// long link full without flooding it.
    #[default]
    Rate,
    /// quinn's Cubic: loss-based, collapses under random loss.
    Cubic,
    /// quinn's BBR (experimental): keeps the rate under loss but over-sends.
    Bbr,
    /// quinn's NewReno: loss-based, collapses under random loss.
    NewReno,
}

impl Congestion {
    /// The factory quinn calls for each new path.
    pub fn factory(self) -> Arc<dyn ControllerFactory + Send + Sync> {
        match self {
            Congestion::Rate => Arc::new(DeliveryRateConfig),
            Congestion::Cubic => Arc::new(CubicConfig::default()),
            Congestion::Bbr => Arc::new(BbrConfig::default()),
            Congestion::NewReno => Arc::new(NewRenoConfig::default()),
        }
    }
}

impl std::fmt::Display for Congestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Congestion::Rate => "rate",
            Congestion::Cubic => "cubic",
            Congestion::Bbr => "bbr",
            Congestion::NewReno => "new-reno",
        };
        f.write_str(name)
    }
}

/// Builds a [`DeliveryRate`] controller for each path.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryRateConfig;

impl ControllerFactory for DeliveryRateConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(DeliveryRate {
            model: Model::new(now, current_mtu),
            known: Arc::default(),
            resumed: false,
        })
    }
}

/// quinn's view of the delivery-rate [`Model`].
#[derive(Debug, Clone)]
pub struct DeliveryRate {
    model: Model,
    /// A path an earlier connection measured, set by [`resume`]: quinn
    /// gives out only copies of a connection's controller, which share this.
    known: Arc<OnceLock<KnownPath>>,
    /// Whether `known` has been handed to the model.
    resumed: bool,
}

impl DeliveryRate {
    /// Hands the model the known path once [`resume`] has set it; the next
    /// acknowledgement after the handshake does it.
    fn take_known_path(&mut self) {
        let Some(&known) = self.known.get().filter(|_| !self.resumed) else {
            return;
        };
        self.resumed = true;
        match self.model.resume(known) {
            Some(window) => tracing::debug!(
                rate_mbit = known.rate * 8e-6,
                min_rtt_ms = known.min_rtt.as_secs_f64() * 1e3,
                window,
                "starting from the rate a previous connection measured"
            ),
            None => tracing::debug!(
                rate_mbit = known.rate * 8e-6,
                min_rtt_ms = known.min_rtt.as_secs_f64() * 1e3,
                "not starting from the rate a previous connection measured: \
                 the round trip differs, or the window is already larger"
            ),
        }
    }
}

/// What `connection` has measured of its path, if its controller is
/// [`Congestion::Rate`] and has measured a rate.
pub fn known_path(connection: &quinn::Connection) -> Option<KnownPath> {
    let controller = connection.congestion_state().into_any();
    controller
        .downcast::<DeliveryRate>()
        .ok()?
        .model
        .known_path()
}

/// Starts `connection`, just established, from what an earlier connection
/// over the same path measured (see [`model::Model::resume`]). Does
/// nothing unless its controller is [`Congestion::Rate`].
pub fn resume(connection: &quinn::Connection, known: KnownPath) {
    let controller = connection.congestion_state().into_any();
    if let Ok(rate) = controller.downcast::<DeliveryRate>() {
        let _ = rate.known.set(known);
    }
}

impl Controller for DeliveryRate {
    fn on_sent(&mut self, now: Instant, _bytes: u64, _last_packet_number: u64) {
        self.model.on_sent(now);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        self.model.on_ack(now, sent, bytes, app_limited);
        self.take_known_path();
    }

    fn on_end_acks(
        &mut self,
        _now: Instant,
        in_flight: u64,
        _app_limited: bool,
        _largest_packet_num_acked: Option<u64>,
    ) {
        self.model.on_end_acks(in_flight);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        _sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.model
            .on_loss(now, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.model.on_mtu(new_mtu);
    }

    fn window(&self) -> u64 {
        self.model.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = ControllerMetrics::default();
        metrics.congestion_window = self.model.window();
        metrics.pacing_rate = Some((self.model.rate() * 8.0) as u64);
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.model.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
