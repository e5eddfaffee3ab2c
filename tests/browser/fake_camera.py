"""A video file for Chromium's fake camera (--use-file-for-fake-video-capture): Y4M,
written with Pillow (4:2:0, the layout Chromium reads)."""
from PIL import Image


def write_y4m(image, path, size=(640, 480), frames=10):
    """A few identical frames of image, centred on white, at size."""
    frame = Image.new("RGB", size, "white")
    img = image.convert("RGB")
    img.thumbnail((size[0] - 40, size[1] - 40))
    frame.paste(img, ((size[0] - img.width) // 2, (size[1] - img.height) // 2))
    y, cb, cr = frame.convert("YCbCr").split()
    half = (size[0] // 2, size[1] // 2)
    planes = y.tobytes() + cb.resize(half).tobytes() + cr.resize(half).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)
    return path


def qr_crop(page_image, margin=0.25):
    """The region of a rendered ticket page around its QR code (found with zxing-cpp)."""
    import zxingcpp
    [found] = [r for r in zxingcpp.read_barcodes(page_image)
               if r.format == zxingcpp.BarcodeFormat.QRCode]
    p = found.position
    xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
    ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
    pad = int((max(xs) - min(xs)) * margin)
    return page_image.crop((min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad))
