def encode(
    pixels: bytes, width: int, height: int, components: int, quality: int,
    icc: bytes = b"", exif: bytes = b"", orientation: int = 1,
) -> bytes: ...
