"""Files relaygate keeps for its users: their contents on disk (:mod:`.storage`), an
upload read from its multipart body as it arrives (:mod:`.upload`) and a batch input
file's lines checked one by one (:mod:`.lines`)."""
