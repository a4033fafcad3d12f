"""The self-hostable network controller: storage, netconf issuing and signing, admin API, member authorization."""
