"""deepline.evaluate"""
