"""Dataset readers (toy world, PASCAL VOC 2012, MS COCO 2014), class lists and the image index."""
