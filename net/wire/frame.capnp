# Owns troupe's wire format: every frame a TCP link carries, the handshake's and the data path's.
#
# On a link whose frames are protected (net/tcp/link_security.h) every frame after the handshake is
# followed by its 16-byte seal.
# On the stream each frame is an 8-byte preamble (magic "TRPF", version, reserved; see
# net/wire/frame_codec.h) followed by one Cap'n Proto message in the standard stream framing
# (segment table, then segments). A chunk's payload is written as the message's LAST segment
# (Orphanage::referenceExternalData), so the sender never copies it into the message and the
# receiver can read it straight into the destination tensor.
@0xa12ed5122776be35;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("troupe::net::wire::schema");

struct Frame {
  union {
    chunk @0 :Chunk;          # data path: one piece of one tagged message
    goodbye @1 :Void;         # orderly close: the sender sends nothing after this frame
    challenge @2 :Challenge;  # handshake 1, acceptor -> connector
    hello @3 :Hello;          # handshake 2, connector -> acceptor
    welcome @4 :Welcome;      # handshake 3, acceptor -> connector: accepted
    reject @5 :Text;          # handshake 3', acceptor -> connector: refused, and why
    roster @6 :Roster;        # rendezvous: rank 0 -> every rank, where each rank listens and its host
    farewell @7 :Text;        # orderly close of a rank whose group broke: why (the dead rank, its host)
  }
}

# Messages larger than one chunk travel as consecutive chunks (index 0, 1, ...) with nothing
# in between on that link; a capnp Data holds at most 2^29 - 1 bytes, troupe's limit per chunk is
# wire::kMaxChunkBytes.
struct Chunk {
  tag @0 :UInt32;           # the Transport tag of the message
  index @1 :UInt32;         # chunk number within the message, from 0
  totalBytes @2 :UInt64;    # the whole message's size
  offset @3 :UInt64;        # where this chunk's payload starts within the message
  payload @4 :Data;
}

struct Challenge {
  rank @0 :Int32;           # the acceptor's rank
  nonce @1 :Data;           # 32 fresh random bytes
}

struct Hello {
  rank @0 :Int32;           # the connector's rank
  size @1 :Int32;           # the group size it was started with
  listenPort @2 :UInt16;    # where it accepts mesh connections (0 for rank 0)
  nonce @3 :Data;           # the connector's 32 fresh random bytes
  mac @4 :Data;             # HMAC-SHA256(secret, "hello" | acceptor nonce | nonce | rank | size)
  listenHost @5 :UInt32;    # the IPv4 address (host order) it accepts on; 0: the one it connected from
  hostname @6 :Text;        # its host's name, so that co-located ranks know each other
  protection @7 :UInt8;     # the frame protection it asks for its link: 0 off, 1 integrity, 2 encrypt
}

# By rank; rank 0's own entries are its host name and zeros.
struct Roster {
  ports @0 :List(UInt16);      # each rank's listening port
  hosts @1 :List(UInt32);      # each rank's listening IPv4 address (host order)
  hostnames @2 :List(Text);    # each rank's host name
}

struct Welcome {
  rank @0 :Int32;           # the acceptor's rank
  mac @1 :Data;             # HMAC-SHA256(secret, "welcome" | connector nonce | acceptor nonce | rank)
  protection @2 :UInt8;     # the frame protection the acceptor asks for the link; both use the stronger
}
