"""Published test accuracy of the FCN (Wang et al. 2017) on the UCR 2018 archive's own splits, for every set
the offline archive folders hold (``archives.py``): the mean of 5 runs in Ismail Fawaz et al. 2019, "Deep
learning for time series classification: a review" (Data Min. Knowl. Disc. 33:917-963), from
results/results-ucr-128.csv of github.com/hfawaz/dl-4-tsc (FCN 128-256-128 filters, 2000 epochs)."""

FCN_ACCURACY: dict[str, float] = {
    "ACSF1": 0.8980, "Adiac": 0.8414, "AllGestureWiimoteX": 0.7134, "AllGestureWiimoteY": 0.7843,
    "AllGestureWiimoteZ": 0.6920, "ArrowHead": 0.8434, "BME": 0.8360, "Beef": 0.6800, "BeetleFly": 0.9100,
    "BirdChicken": 0.9400, "CBF": 0.9938, "Car": 0.9133, "Chinatown": 0.9796, "ChlorineConcentration": 0.8165,
    "CinCECGTorso": 0.8288, "Coffee": 1.0000, "Computers": 0.8192, "CricketX": 0.7944, "CricketY": 0.7928,
    "CricketZ": 0.8097, "Crop": 0.7382, "DiatomSizeReduction": 0.3464, "DistalPhalanxOutlineAgeGroup": 0.7180,
    "DistalPhalanxOutlineCorrect": 0.7601, "DistalPhalanxTW": 0.6950, "DodgerLoopDay": 0.1425,
    "DodgerLoopGame": 0.7681, "DodgerLoopWeekend": 0.9043, "ECG200": 0.8880, "ECG5000": 0.9400,
    "ECGFiveDays": 0.9854, "EOGHorizontalSignal": 0.5646, "EOGVerticalSignal": 0.4464, "Earthquakes": 0.7252,
    "ElectricDevices": 0.7065, "EthanolLevel": 0.4840, "FaceAll": 0.9375, "FaceFour": 0.9295, "FacesUCR": 0.9434,
    "FiftyWords": 0.6457, "Fish": 0.9611, "FordA": 0.9141, "FordB": 0.7723, "FreezerRegularTrain": 0.9968,
    "FreezerSmallTrain": 0.6831, "Fungi": 0.0183, "GestureMidAirD1": 0.6954, "GestureMidAirD2": 0.6308,
    "GestureMidAirD3": 0.3262, "GesturePebbleZ1": 0.8802, "GesturePebbleZ2": 0.7810, "GunPoint": 1.0000,
    "GunPointAgeSpan": 0.9956, "GunPointMaleVersusFemale": 0.9968, "GunPointOldVersusYoung": 0.9886, "Ham": 0.7067,
    "HandOutlines": 0.7989, "Haptics": 0.4896, "Herring": 0.6438, "HouseTwenty": 0.9815, "InlineSkate": 0.3316,
    "InsectEPGRegularTrain": 0.9992, "InsectEPGSmallTrain": 0.2185, "InsectWingbeatSound": 0.3919,
    "ItalyPowerDemand": 0.9629, "LargeKitchenAppliances": 0.9029, "Lightning2": 0.7344, "Lightning7": 0.8247,
    "Mallat": 0.9671, "Meat": 0.8033, "MedicalImages": 0.7784, "MelbournePedestrian": 0.9123,
    "MiddlePhalanxOutlineAgeGroup": 0.5351, "MiddlePhalanxOutlineCorrect": 0.7945, "MiddlePhalanxTW": 0.5013,
    "MixedShapesRegularTrain": 0.9549, "MixedShapesSmallTrain": 0.8934, "MoteStrain": 0.9358,
    "NonInvasiveFetalECGThorax1": 0.9583, "NonInvasiveFetalECGThorax2": 0.9531, "OSULeaf": 0.9785,
    "OliveOil": 0.7200, "PLAID": 0.9039, "PhalangesOutlinesCorrect": 0.8177, "Phoneme": 0.3280,
    "PickupGestureWiimoteZ": 0.7440, "PigAirwayPressure": 0.1721, "PigArtPressure": 0.9865, "PigCVP": 0.8308,
    "Plane": 1.0000, "PowerCons": 0.8633, "ProximalPhalanxOutlineAgeGroup": 0.8254,
    "ProximalPhalanxOutlineCorrect": 0.9065,
}
