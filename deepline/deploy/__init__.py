"""deepline.deploy"""
