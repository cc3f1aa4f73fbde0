from kerasrl.agents.lstm_td3.lstm_td3 import HistoryState, LSTMTD3

__all__ = ["HistoryState", "LSTMTD3"]
