//! Integration tests: the real server on loopback sockets, a simulated Twilio caller speaking
//! real (flite) speech in real time, and the Kore simulator checking every request.

mod accuracy;
mod asterisk;
mod audiosocket;
mod call_flow;
mod cluster;
mod contract;
mod exotel;
mod faults;
mod genesys;
mod ingenious;
mod jambonz;
mod operate;
mod plivo;
mod secrets;
mod server;
mod signalwire;
mod silero;
mod smart_turn;
mod speech_backends;
mod support;
mod telnyx;
mod tls;
mod voice;
mod vonage;
