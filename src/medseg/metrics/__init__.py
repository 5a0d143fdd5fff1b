"""medseg.metrics"""
