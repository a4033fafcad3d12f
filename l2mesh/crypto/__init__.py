"""Cryptographic cores: the Noise handshake, the transport AEAD and the replay window (all sans-IO)."""
