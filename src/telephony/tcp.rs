//! A raw TCP connection as a [`MediaTransport`], for providers that are TCP listeners
//! ([`super::Provider::tcp_listen`], AudioSocket). There are no messages on a byte stream:
//! each read arrives as one binary frame holding whatever bytes came (at most
//! [`READ_CHUNK_BYTES`]), and the provider's decoder does the framing. Binary frames out are
//! written as they are; the WebSocket close frame has no meaning here and is skipped, and
//! closing the sink shuts the write half down.

use std::pin::Pin;

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::ws::MediaTransport;

/// The most bytes one read hands the decoder. A 20 ms AudioSocket frame is 323 bytes; a
/// small chunk keeps an idle call's memory low and bounds what one decode can queue.
pub const READ_CHUNK_BYTES: usize = 4 * 1024;

/// A provider's TCP connection, run by the socket loop.
pub struct TcpTransport(pub TcpStream);

impl MediaTransport for TcpTransport {
    type Sink = Pin<Box<dyn Sink<Message, Error = axum::Error> + Send>>;
    type Stream = Pin<Box<dyn Stream<Item = Result<Message, axum::Error>> + Send>>;

    fn split(self) -> (Self::Sink, Self::Stream) {
        let (read, write) = self.0.into_split();
        (Box::pin(writer(write)), Box::pin(reader(read)))
    }
}

/// The read half as a stream of byte chunks; a reset by the peer reads as the end of the
/// stream (the PBX went away, which is a hang-up, not a protocol fault).
fn reader(read: OwnedReadHalf) -> impl Stream<Item = Result<Message, axum::Error>> + Send {
    futures_util::stream::unfold(
        (read, vec![0u8; READ_CHUNK_BYTES]),
        |(mut read, mut buf)| async move {
            match read.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    let chunk = Message::Binary(buf[..n].to_vec().into());
                    Some((Ok(chunk), (read, buf)))
                }
                Err(e) if is_disconnect(&e) => None,
                Err(e) => Some((Err(axum::Error::new(e)), (read, buf))),
            }
        },
    )
}

/// The write half as a sink of frames: binary frames written whole, others skipped.
fn writer(write: OwnedWriteHalf) -> impl Sink<Message, Error = axum::Error> + Send {
    futures_util::sink::unfold(write, |mut write, msg: Message| async move {
        match msg {
            Message::Binary(bytes) => write.write_all(&bytes).await.map_err(axum::Error::new)?,
            // The close frame of a WebSocket: the connection itself closes after it.
            Message::Close(_) => write.shutdown().await.map_err(axum::Error::new)?,
            Message::Text(_) | Message::Ping(_) | Message::Pong(_) => {}
        }
        Ok::<_, axum::Error>(write)
    })
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn bytes_arrive_as_chunks_and_frames_leave_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        let (mut sink, mut stream) = TcpTransport(conn).split();

        peer.write_all(&[0x01, 0x00, 0x02, 0xAB]).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            match stream.next().await {
                Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, [0x01, 0x00, 0x02, 0xAB]);

        sink.send(Message::Text("skipped".into())).await.unwrap();
        sink.send(Message::Binary(vec![0x00, 0x00, 0x00].into()))
            .await
            .unwrap();
        sink.send(Message::Close(None)).await.unwrap();
        let mut back = Vec::new();
        peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, [0x00, 0x00, 0x00], "only the binary frame, then EOF");

        drop(peer);
        assert!(
            stream.next().await.is_none(),
            "the peer's close ends the stream"
        );
    }
}
