//! For providers' codec tests: a connection's codec halves driven the way `ws.rs` drives
//! them (pending events taken after each frame, start handed to the encoder, flow changes
//! passed from decoder to encoder), without a socket.

use super::{Codec, InboundEvent, OutboundCommand, ProtocolError, WireFrame};

/// A codec under test and the protocol replies its decoder produced.
pub(crate) struct Proto(pub Codec, pub Vec<WireFrame>);

impl Proto {
    /// Drives `codec`.
    pub fn new(codec: Codec) -> Self {
        Proto(codec, Vec::new())
    }

    fn drain(&mut self, first: Option<InboundEvent>) -> Vec<InboundEvent> {
        let mut evs: Vec<InboundEvent> = first.into_iter().collect();
        while let Some(ev) = self.0.decoder.take_pending() {
            evs.push(ev);
        }
        for ev in &evs {
            if let InboundEvent::Start(s) = ev {
                self.0.encoder.started(s);
            }
        }
        evs
    }

    /// Every event one text frame yields.
    pub fn text(&mut self, t: &str) -> Result<Vec<InboundEvent>, ProtocolError> {
        let first = self.0.decoder.decode_text(t, &mut self.1)?;
        Ok(self.drain(first))
    }

    /// Every event one binary frame yields.
    pub fn binary(&mut self, b: &[u8]) -> Result<Vec<InboundEvent>, ProtocolError> {
        let first = self.0.decoder.decode_binary(b, &mut self.1)?;
        Ok(self.drain(first))
    }

    /// The frames one command becomes.
    pub fn encode(&mut self, cmd: &OutboundCommand) -> Vec<WireFrame> {
        let mut out = Vec::new();
        self.0.encoder.encode(cmd, &mut out);
        out
    }

    /// Hands the decoder's flow change, if any, to the encoder; what the encoder sends then.
    pub fn flow(&mut self) -> Vec<WireFrame> {
        let mut out = Vec::new();
        if let Some(f) = self.0.decoder.take_flow() {
            self.0.encoder.flow(f, &mut out);
        }
        out
    }
}
