def resample(
    src: bytes | bytearray | memoryview, width: int, height: int, stride: int,
    box: tuple[float, float, float, float], size: tuple[int, int], filter: int,
) -> bytes: ...
