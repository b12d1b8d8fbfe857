"""placeholder replaced below"""


def export_site(folder, out):
    raise NotImplementedError
